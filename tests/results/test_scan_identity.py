"""One scan identity: find_scan matches it, and the scan lock is named by it."""

from __future__ import annotations

from dataclasses import replace

from amberwatch.db import connect
from amberwatch.results.records import ScanParams
from amberwatch.results.store import NewScan, create_scan, ensure_schema, find_scan, scan_identity
from amberwatch.scan.lock import scan_lock_path


def test_find_scan_and_the_lock_use_one_identity_that_carries_the_imagery_date(tmp_path):
    conn = connect(tmp_path / "p.db")
    ensure_schema(conn)
    base = NewScan("s", "{}", "http://x/{z}/{x}/{y}.png", "xyz-1", 18, "0", 0.5, ScanParams(int8=True), 4)
    dated = replace(base, imagery_source_id="xyz-1@2018-06", imagery_date="2018-06")
    ids = [create_scan(conn, scan) for scan in (base, dated)]
    assert [find_scan(conn, scan_identity(scan)) for scan in (base, dated)] == ids
    fp32 = replace(base, params=ScanParams(int8=False))
    assert find_scan(conn, scan_identity(fp32)) is None
    locks = {scan_lock_path(tmp_path / "p.db", scan_identity(s)) for s in (base, dated, fp32)}
    assert len(locks) == 3
    conn.close()
