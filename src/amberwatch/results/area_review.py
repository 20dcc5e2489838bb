"""Reviewing an area sample (reference labels from a CSV or the labelling page) and estimating from it."""

from __future__ import annotations

import csv
import io
import sqlite3
from pathlib import Path

from amberwatch.db import utc_now_iso
from amberwatch.errors import DatabaseError, InvalidInputError, NotFoundError
from amberwatch.results.area_estimate import AreaEstimate, StratumCounts, estimate_area
from amberwatch.results.area_schema import ensure_area_schema
from amberwatch.results.map_units import REFERENCE_CLASSES
from amberwatch.results.sampling import latest_sample_id, load_sample


def normalize_reference_class(value: str) -> str:
    """Canonical reference class (``mining``/``not_mining``; case, spaces and hyphens forgiven)."""
    v = str(value).strip().lower().replace("-", "_").replace(" ", "_")
    if v not in REFERENCE_CLASSES:
        raise InvalidInputError(f"reference class {value!r} is not one of {list(REFERENCE_CLASSES)}")
    return v


def pending_units(conn: sqlite3.Connection, sample_id: int, *, include_map_class: bool = False) -> list[dict]:
    """Units of a sample still without a reference class, in review order.

    Each dict has unit_id, sample_id, z, x, y, cell_row, cell_col, grid_cells, west, south, east,
    north, lon, lat, area_ha; the map's stratum/class/probability only with ``include_map_class``
    (reference labels should be given blind to the map).
    """
    load_sample(conn, sample_id)
    cols = "unit_id, sample_id, z, x, y, cell_row, cell_col, grid_cells, west, south, east, north, area_ha"
    if include_map_class:
        cols += ", stratum, map_class, map_prob"
    rows = conn.execute(
        f"SELECT {cols} FROM area_sample_units WHERE sample_id = ? AND reference_class IS NULL ORDER BY unit_id",
        (sample_id,),
    ).fetchall()
    out = []
    for r in rows:
        d = dict(r)
        d["lon"] = (d["west"] + d["east"]) / 2
        d["lat"] = (d["south"] + d["north"]) / 2
        out.append(d)
    return out


def record_reference(conn: sqlite3.Connection, unit_id: int, reference_class: str, reviewed_by: str) -> dict:
    """Set (or correct) the reference class of one sample unit; return the updated unit."""
    ensure_area_schema(conn)
    ref = normalize_reference_class(reference_class)
    if not str(reviewed_by or "").strip():
        raise InvalidInputError(f"reviewer {reviewed_by!r} must be a non-empty name")
    cur = conn.execute(
        "UPDATE area_sample_units SET reference_class = ?, reviewed_by = ?, reviewed_at = ? WHERE unit_id = ?",
        (ref, str(reviewed_by).strip(), utc_now_iso(), unit_id),
    )
    if cur.rowcount == 0:
        raise NotFoundError(f"area sample unit {unit_id} does not exist")
    return dict(conn.execute("SELECT * FROM area_sample_units WHERE unit_id = ?", (unit_id,)).fetchone())


def import_reference_csv(
    conn: sqlite3.Connection, sample_id: int, path: str | Path, reviewed_by: str | None = None
) -> dict[str, int]:
    """Record reference classes from a CSV with header ``unit_id,reference_class`` (extra columns ignored).

    Rows with an empty reference_class are skipped (not yet reviewed). Every row is checked before
    anything is written; the first bad row raises an error naming its line. Returns counts.
    """
    load_sample(conn, sample_id)
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read reference file {str(p)!r}: {exc}") from exc
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    for required in ("unit_id", "reference_class"):
        if required not in header:
            raise InvalidInputError(
                f"reference file {str(p)!r} has no {required!r} column (header {header}); "
                "expected unit_id,reference_class"
            )
    known = {
        r[0] for r in conn.execute("SELECT unit_id FROM area_sample_units WHERE sample_id = ?", (sample_id,))
    }
    updates: dict[int, str] = {}
    skipped = 0
    for row in reader:
        line = reader.line_num
        raw_id = (row.get("unit_id") or "").strip()
        raw_class = (row.get("reference_class") or "").strip()
        if not raw_id and not raw_class:
            continue
        try:
            unit_id = int(raw_id)
        except ValueError:
            raise InvalidInputError(
                f"reference file {str(p)!r} line {line}: unit_id {raw_id!r} is not an integer"
            ) from None
        if unit_id not in known:
            raise InvalidInputError(
                f"reference file {str(p)!r} line {line}: unit_id {unit_id} is not a unit of sample {sample_id}"
            )
        if not raw_class:
            skipped += 1
            continue
        try:
            ref = normalize_reference_class(raw_class)
        except InvalidInputError as exc:
            raise InvalidInputError(f"reference file {str(p)!r} line {line} (unit_id {unit_id}): {exc}") from None
        if unit_id in updates and updates[unit_id] != ref:
            raise InvalidInputError(
                f"reference file {str(p)!r} line {line}: unit_id {unit_id} is given twice with different classes"
            )
        updates[unit_id] = ref
    who = (reviewed_by or "").strip() or f"import:{p.name}"
    now = utc_now_iso()
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(
            "UPDATE area_sample_units SET reference_class = ?, reviewed_by = ?, reviewed_at = ? WHERE unit_id = ?",
            [(ref, who, now, uid) for uid, ref in updates.items()],
        )
        conn.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        conn.execute("ROLLBACK")
        raise DatabaseError(f"cannot store reference classes from {str(p)!r}: {exc}") from exc
    return {"recorded": len(updates), "skipped_blank": skipped}


def review_progress(conn: sqlite3.Connection, sample_id: int) -> dict[str, int]:
    """Units reviewed and total in a sample."""
    load_sample(conn, sample_id)
    total, reviewed = conn.execute(
        "SELECT COUNT(*), COUNT(reference_class) FROM area_sample_units WHERE sample_id = ?", (sample_id,)
    ).fetchone()
    return {"units": int(total), "reviewed": int(reviewed)}


def list_samples(conn: sqlite3.Connection, scan_id: int | None = None) -> list[dict]:
    """Samples (optionally of one scan) with their size and review progress, newest first."""
    ensure_area_schema(conn)
    rows = conn.execute(
        "SELECT s.id AS sample_id, s.scan_id, s.created_at, s.seed, s.allocation, s.buffer_m,"
        " COUNT(u.unit_id) AS units, COUNT(u.reference_class) AS reviewed"
        " FROM area_samples s LEFT JOIN area_sample_units u ON u.sample_id = s.id"
        " WHERE (? IS NULL OR s.scan_id = ?) GROUP BY s.id ORDER BY s.id DESC",
        (scan_id, scan_id),
    ).fetchall()
    return [dict(r) for r in rows]


def reviewed_strata(conn: sqlite3.Connection, sample_id: int) -> list[StratumCounts]:
    """The sample's strata (mapped area) with counts of reviewed units per reference class."""
    sample = load_sample(conn, sample_id)
    counts: dict[str, dict[str, int]] = {p.stratum: {c: 0 for c in REFERENCE_CLASSES} for p in sample.strata}
    for stratum, ref, n in conn.execute(
        "SELECT stratum, reference_class, COUNT(*) FROM area_sample_units"
        " WHERE sample_id = ? AND reference_class IS NOT NULL GROUP BY stratum, reference_class",
        (sample_id,),
    ):
        counts.setdefault(stratum, {c: 0 for c in REFERENCE_CLASSES})[ref] = int(n)
    return [StratumCounts(p.stratum, p.map_class, p.area_ha, counts[p.stratum]) for p in sample.strata]


def estimate_for_scan(
    conn: sqlite3.Connection, scan_id: int, sample_id: int | None = None
) -> tuple[AreaEstimate, dict]:
    """Estimate from the reviewed units of a scan's sample (default: its latest); also return sample info."""
    if sample_id is None:
        sample_id = latest_sample_id(conn, scan_id)
    sample = load_sample(conn, sample_id)
    if sample.scan_id != scan_id:
        raise InvalidInputError(f"area sample {sample_id} belongs to scan {sample.scan_id}, not scan {scan_id}")
    estimate = estimate_area(reviewed_strata(conn, sample_id), reference_classes=list(REFERENCE_CLASSES))
    info = {"scan_id": scan_id, "sample_id": sample_id, **review_progress(conn, sample_id)}
    return estimate, info
