"""A full project DB mid-scan: one line, exit 1, the tiles written so far kept; with space again the scan resumes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from amberwatch.cli import main
from amberwatch.db import connect
from amberwatch.model.registry import ensure_schema as ensure_registry_schema
from amberwatch.results.store import ensure_schema
from tests.fixtures.diskfull import cap_sqlite_file
from tests.scan.conftest import ZOOM, bbox_arg, put_mosaic_tiles, tile_origin, tiles_bbox


def _tiles(db: Path) -> dict[tuple[int, int], tuple]:
    conn = sqlite3.connect(db)
    try:
        return {(x, y): (s, bytes(g)) for x, y, s, g in conn.execute("SELECT x, y, status, grid FROM scan_tiles")}
    finally:
        conn.close()


@pytest.mark.slow
def test_a_full_project_db_stops_the_scan_in_one_line_and_the_same_command_resumes_it(
    tile_server, tmp_path, monkeypatch
):
    x, y = tile_origin((80, 0))
    x0, y0 = x - x % 8 - 2, y - y % 8 - 2  # 4 x 4 tiles across 4 units of the 8 x 8 grid
    put_mosaic_tiles(tile_server, x0, y0, 4, 4)
    db = tmp_path / "full.db"
    conn = connect(db)
    ensure_schema(conn)  # the tables exist: the cap leaves room for the scan's row and its first units only
    ensure_registry_schema(conn)
    conn.close()
    args = ["scan", "--bbox", bbox_arg(tiles_bbox(x0, y0, 4, 4)), "--imagery", tile_server.url, "--zoom", str(ZOOM)]
    args += ["--db", str(db), "--workers", "1", "--no-progress", "--fp32"]
    cap = cap_sqlite_file(monkeypatch, db, spare_pages=1)

    full = CliRunner().invoke(main, args, catch_exceptions=False)
    assert full.exit_code == 1 and "Traceback" not in full.output
    errors = [line for line in full.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [
        f"Error: project database {str(db)!r} could not be written: no space left (database or disk is full). "
        "The work done so far is kept: free some disk space and run the same command again"
    ]
    kept = _tiles(db)
    assert 0 < len(kept) < 16 and cap.capped_connections > 0

    cap.lift()
    again = CliRunner().invoke(main, args, catch_exceptions=False)
    assert again.exit_code == 0, again.output
    assert "Scan 1 resumed and finished: 16 tiles (16 done" in again.output
    after = _tiles(db)
    assert len(after) == 16 and all(after[xy] == row for xy, row in kept.items())  # the kept tiles were not redone
