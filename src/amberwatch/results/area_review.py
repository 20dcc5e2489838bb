"""Reviewing an area sample (reference labels from a CSV or the labelling page) and estimating from it.

Besides the reference classes a reviewer may answer ``no_imagery``: the unit leaves the sample (it is not
counted), a replacement unit of its stratum is drawn, and the stratum's area in the estimate is reduced by
the share of its answered units that had no imagery.

A change sample (``sampling.draw_change_sample``) is labelled at both dates (CSV columns ``reference_from`` and
``reference_to``); a unit without imagery at either date leaves it the same way, and the estimate is of the change
areas (``area_estimate.estimate_change``: hectares newly dug between the dates, with their interval).
"""

from __future__ import annotations

import csv
import io
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from amberwatch.db import utc_now_iso
from amberwatch.errors import DatabaseError, InvalidInputError, NotFoundError
from amberwatch.results import area_store
from amberwatch.results.area_estimate import (
    AreaEstimate,
    StratumCounts,
    change_sentence,
    estimate_area,
    estimate_change,
)
from amberwatch.results.area_store import ensure_area_schema
from amberwatch.results.map_units import NO_IMAGERY, REFERENCE_CLASSES
from amberwatch.results.records import Scan
from amberwatch.results.sampling import draw_replacement, latest_sample_id, load_sample
from amberwatch.results.store import get_scan

ANSWERS: tuple[str, ...] = (*REFERENCE_CLASSES, NO_IMAGERY)
CHANGE_COLUMNS: tuple[str, str] = ("reference_from", "reference_to")  # a change sample's CSV: earlier, later date


def normalize_reference_class(value: str) -> str:
    """Canonical answer (``mining``/``not_mining``/``no_imagery``; case, spaces and hyphens forgiven)."""
    v = str(value).strip().lower().replace("-", "_").replace(" ", "_")
    if v not in ANSWERS:
        raise InvalidInputError(f"reference class {value!r} is not one of {list(ANSWERS)}")
    return v


def pending_units(conn: sqlite3.Connection, sample_id: int, *, include_map_class: bool = False) -> list[dict]:
    """Units of a sample still without a reference class, in review order.

    Each dict has unit_id, sample_id, z, x, y, cell_row, cell_col, grid_cells, west, south, east,
    north, lon, lat, area_ha; the map's stratum/class/probability only with ``include_map_class``
    (reference labels should be given blind to the map).
    """
    load_sample(conn, sample_id)
    return area_store.pending_units(conn, sample_id, include_map_class=include_map_class)


def record_reference(
    conn: sqlite3.Connection, unit_id: int, reference_class: str, reviewed_by: str, reference_from: str | None = None
) -> dict:
    """Set (or correct) the reference class of one sample unit; return the updated unit.

    A unit of a change sample needs ``reference_from`` too (its class at the earlier date; ``reference_class`` is
    the later one's). ``no_imagery`` at either date adds a replacement unit (its id as ``replacement_unit_id``, None
    when there was none to draw).
    """
    ensure_area_schema(conn)
    ref = normalize_reference_class(reference_class)
    if not str(reviewed_by or "").strip():
        raise InvalidInputError(f"reviewer {reviewed_by!r} must be a non-empty name")
    before = area_store.get_unit(conn, unit_id)
    if before is None:
        raise NotFoundError(f"area sample unit {unit_id} does not exist")
    ref_from = _checked_reference_from(conn, before, reference_from)
    unit = area_store.set_reference_class(conn, unit_id, ref, str(reviewed_by).strip(), utc_now_iso(), ref_from)
    if unit is None:
        raise NotFoundError(f"area sample unit {unit_id} does not exist")
    if _newly_without_imagery(before, ref_from, ref):
        unit["replacement_unit_id"] = draw_replacement(conn, int(unit["sample_id"]), unit_id)
    return unit


def _checked_reference_from(conn: sqlite3.Connection, unit: dict, reference_from: str | None) -> str | None:
    """The earlier date's answer, required for a unit of a change sample and refused for any other."""
    sample = load_sample(conn, int(unit["sample_id"]))
    if sample.is_change and reference_from is None:
        raise InvalidInputError(
            f"unit {unit['unit_id']} belongs to change sample {sample.sample_id}: give its class at the earlier date"
        )
    if not sample.is_change and reference_from is not None:
        raise InvalidInputError(f"unit {unit['unit_id']} belongs to one-date sample {sample.sample_id}: one class")
    return None if reference_from is None else normalize_reference_class(reference_from)


def _newly_without_imagery(before: dict, ref_from: str | None, ref_to: str) -> bool:
    """The answers now say no imagery at some date and did not before (a replacement is due)."""
    had = NO_IMAGERY in (before.get("reference_class_from"), before.get("reference_class"))
    return not had and NO_IMAGERY in (ref_from, ref_to)


def import_reference_csv(
    conn: sqlite3.Connection, sample_id: int, path: str | Path, reviewed_by: str | None = None
) -> dict[str, int]:
    """Record reference classes from a CSV with header ``unit_id,reference_class`` (extra columns ignored).

    Rows with an empty reference_class are skipped (not yet reviewed). Every row is checked before
    anything is written; the first bad row raises an error naming its line. A unit newly answered
    ``no_imagery`` gets a replacement unit (export the sample again to review it). Returns counts.
    """
    if load_sample(conn, sample_id).is_change:
        return import_change_csv(conn, sample_id, path, reviewed_by)
    p = Path(path)
    reader = _open_reference_csv(p)
    before = {u["unit_id"]: u["reference_class"] for u in area_store.units_of_sample(conn, sample_id)}
    updates, skipped = _reference_updates(reader, p, sample_id, set(before))
    who = (reviewed_by or "").strip() or f"import:{p.name}"
    try:
        area_store.set_reference_classes(conn, updates, who, utc_now_iso())
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(f"cannot store reference classes from {str(p)!r}: {exc}") from exc
    gone = sorted(u for u, ref in updates.items() if ref == NO_IMAGERY and before[u] != NO_IMAGERY)
    replaced = sum(draw_replacement(conn, sample_id, u) is not None for u in gone)
    return {"recorded": len(updates), "skipped_blank": skipped, "no_imagery": len(gone), "replaced": replaced}


def import_change_csv(
    conn: sqlite3.Connection, sample_id: int, path: str | Path, reviewed_by: str | None = None
) -> dict[str, int]:
    """Record both dates' classes of a change sample from a CSV with header ``unit_id,reference_from,reference_to``.

    A row with both blank is skipped; one blank is an error naming its line, as is any bad row (nothing written).
    """
    p = Path(path)
    reader = _open_reference_csv(p, ("unit_id", *CHANGE_COLUMNS))
    before = {u["unit_id"]: u for u in area_store.units_of_sample(conn, sample_id)}
    updates, skipped = _change_updates(reader, p, sample_id, set(before))
    who = (reviewed_by or "").strip() or f"import:{p.name}"
    try:
        area_store.set_change_references(conn, updates, who, utc_now_iso())
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(f"cannot store reference classes from {str(p)!r}: {exc}") from exc
    gone = sorted(u for u, (a, b) in updates.items() if _newly_without_imagery(before[u], a, b))
    replaced = sum(draw_replacement(conn, sample_id, u) is not None for u in gone)
    return {"recorded": len(updates), "skipped_blank": skipped, "no_imagery": len(gone), "replaced": replaced}


def _change_updates(
    reader: csv.DictReader, p: Path, sample_id: int, known: set[int]
) -> tuple[dict[int, tuple[str, str]], int]:
    """Check every row of a change reference file -> ({unit_id: (earlier, later)}, rows left blank)."""
    updates: dict[int, tuple[str, str]] = {}
    skipped = 0
    for row in reader:
        line = reader.line_num
        pair = [
            _reference_row({**row, "reference_class": row.get(c)}, line, p, sample_id, known) for c in CHANGE_COLUMNS
        ]
        if pair[0] is None and pair[1] is None:
            continue
        if pair[0] is None or pair[1] is None or (pair[0][1] is None) != (pair[1][1] is None):
            raise InvalidInputError(
                f"reference file {str(p)!r} line {line}: give both reference_from and reference_to, or neither"
            )
        unit_id, ref_from, ref_to = pair[0][0], pair[0][1], pair[1][1]
        if ref_from is None or ref_to is None:
            skipped += 1
            continue
        if updates.get(unit_id, (ref_from, ref_to)) != (ref_from, ref_to):
            raise InvalidInputError(
                f"reference file {str(p)!r} line {line}: unit_id {unit_id} is given twice with different classes"
            )
        updates[unit_id] = (ref_from, ref_to)
    return updates, skipped


def _open_reference_csv(p: Path, required: Sequence[str] = ("unit_id", "reference_class")) -> csv.DictReader:
    """A reader over a reference file whose (stripped) header has the required columns."""
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read reference file {str(p)!r}: {exc}") from exc
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    for column in required:
        if column not in header:
            raise InvalidInputError(
                f"reference file {str(p)!r} has no {column!r} column (header {header}); expected {','.join(required)}"
            )
    return reader


def _reference_updates(reader: csv.DictReader, p: Path, sample_id: int, known: set[int]) -> tuple[dict[int, str], int]:
    """Check every row of a reference file -> ({unit_id: reference class}, rows skipped with a blank class)."""
    updates: dict[int, str] = {}
    skipped = 0
    for row in reader:
        line = reader.line_num
        parsed = _reference_row(row, line, p, sample_id, known)
        if parsed is None:
            continue
        unit_id, ref = parsed
        if ref is None:
            skipped += 1
            continue
        if unit_id in updates and updates[unit_id] != ref:
            raise InvalidInputError(
                f"reference file {str(p)!r} line {line}: unit_id {unit_id} is given twice with different classes"
            )
        updates[unit_id] = ref
    return updates, skipped


def _reference_row(row: dict, line: int, p: Path, sample_id: int, known: set[int]) -> tuple[int, str | None] | None:
    """One checked row: (unit_id, class or None when blank), or None for an empty row."""
    raw_id = (row.get("unit_id") or "").strip()
    raw_class = (row.get("reference_class") or "").strip()
    if not raw_id and not raw_class:
        return None
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
        return unit_id, None
    try:
        return unit_id, normalize_reference_class(raw_class)
    except InvalidInputError as exc:
        raise InvalidInputError(f"reference file {str(p)!r} line {line} (unit_id {unit_id}): {exc}") from None


def review_progress(conn: sqlite3.Connection, sample_id: int) -> dict[str, int]:
    """Units reviewed and total in a sample."""
    load_sample(conn, sample_id)
    total, reviewed = area_store.review_counts(conn, sample_id)
    return {"units": total, "reviewed": reviewed}


def list_samples(conn: sqlite3.Connection, scan_id: int | None = None) -> list[dict]:
    """Samples (optionally of one scan) with their size and review progress, newest first."""
    ensure_area_schema(conn)
    return area_store.samples_with_progress(conn, scan_id)


def reviewed_strata(conn: sqlite3.Connection, sample_id: int) -> list[StratumCounts]:
    """The sample's strata with counts of reviewed units per reference class.

    A stratum's area is its mapped area (ground with imagery) times the share of its answered units that
    had imagery, so ground reviewers found without imagery is left out of the estimate too.
    """
    sample = load_sample(conn, sample_id)
    counts: dict[str, dict[str, int]] = {p.stratum: {c: 0 for c in REFERENCE_CLASSES} for p in sample.strata}
    missing = {p.stratum: 0 for p in sample.strata}
    for stratum, ref, n in area_store.reference_counts(conn, sample_id):
        if ref == NO_IMAGERY:
            missing[stratum] = missing.get(stratum, 0) + n
        else:
            counts.setdefault(stratum, {c: 0 for c in REFERENCE_CLASSES})[ref] = n
    out = []
    for p in sample.strata:
        seen = sum(counts[p.stratum].values())
        share = seen / (seen + missing[p.stratum]) if missing[p.stratum] else 1.0
        out.append(StratumCounts(p.stratum, p.map_class, p.area_ha * share, counts[p.stratum]))
    return out


def estimate_for_scan(
    conn: sqlite3.Connection, scan_id: int, sample_id: int | None = None
) -> tuple[AreaEstimate, dict]:
    """Estimate from the reviewed units of a scan's sample (default: its latest); also return sample info."""
    if sample_id is None:
        sample_id = latest_sample_id(conn, scan_id)
    sample = load_sample(conn, sample_id)
    if sample.scan_id != scan_id:
        raise InvalidInputError(f"area sample {sample_id} belongs to scan {sample.scan_id}, not scan {scan_id}")
    if sample.is_change:
        return estimate_change_for_sample(conn, sample_id)
    estimate = estimate_area(reviewed_strata(conn, sample_id), reference_classes=list(REFERENCE_CLASSES))
    no_imagery = sum(n for _, ref, n in area_store.reference_counts(conn, sample_id) if ref == NO_IMAGERY)
    if no_imagery:
        left_out = sample.total_area_ha - estimate.total_area_ha
        estimate.notes.append(
            f"{no_imagery} sample unit(s) had no imagery and were replaced; about {left_out:,.1f} ha of the "
            f"{sample.total_area_ha:,.1f} ha frame is estimated to have none and is left out of the areas"
        )
    info = {"scan_id": scan_id, "sample_id": sample_id, "no_imagery": no_imagery, **review_progress(conn, sample_id)}
    return estimate, info


def estimate_change_for_sample(conn: sqlite3.Connection, sample_id: int) -> tuple[AreaEstimate, dict]:
    """The change estimate of a change sample from its units answered at both dates; also return sample info.

    Units without imagery at either date leave the sample, and each stratum's area shrinks by their share.
    """
    sample = load_sample(conn, sample_id)
    if not sample.is_change:
        raise InvalidInputError(f"area sample {sample_id} is a one-date sample of scan {sample.scan_id}, not a change")
    answers = area_store.change_reference_counts(conn, sample_id)
    missing = {p.stratum: 0 for p in sample.strata}
    for stratum, ref_from, ref_to, n in answers:
        if NO_IMAGERY in (ref_from, ref_to):
            missing[stratum] = missing.get(stratum, 0) + n
    seen = [a for a in answers if NO_IMAGERY not in a[1:3]]
    areas = {p.stratum: p.area_ha * _share_with_imagery(p.stratum, seen, missing) for p in sample.strata}
    answered = {p.stratum: sum(n for s, *_, n in answers if s == p.stratum) for p in sample.strata}
    census = [p.stratum for p in sample.strata if answered[p.stratum] >= p.cell_count]  # every cell reviewed
    estimate = estimate_change(areas, seen, census=census)
    earlier, later = get_scan(conn, int(sample.from_scan_id or 0)), get_scan(conn, sample.scan_id)
    info = {**_change_info(sample_id, earlier, later), "no_imagery": sum(missing.values())}
    info.update(review_progress(conn, sample_id))
    info["sentence"] = change_sentence(estimate, str(earlier.imagery_date), str(later.imagery_date))
    return estimate, info


def _share_with_imagery(stratum: str, seen: Sequence[tuple[str, str, str, int]], missing: dict[str, int]) -> float:
    """The share of a stratum's answered units that had imagery at both dates (1 when none lacked it)."""
    n_seen = sum(n for s, _, _, n in seen if s == stratum)
    return n_seen / (n_seen + missing[stratum]) if missing.get(stratum) else 1.0


def _change_info(sample_id: int, earlier: Scan, later: Scan) -> dict:
    return {
        "change": True,
        "sample_id": sample_id,
        "from_scan_id": earlier.id,
        "to_scan_id": later.id,
        "scan_id": later.id,
        "from_date": earlier.imagery_date,
        "to_date": later.imagery_date,
    }
