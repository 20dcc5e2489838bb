"""Choosing the story's detections from the project DB: the scan, the fragments and the map's polygons."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from amberwatch.errors import InvalidInputError, NotFoundError
from amberwatch.imagery.types import LngLatBbox
from amberwatch.story.article import FragmentChoice

MAX_MAP_DETECTIONS = 5000


@dataclass(frozen=True)
class Site:
    """One detection as the story uses it."""

    id: int
    scan_id: int
    imagery_source_id: str
    zoom: int
    geometry: dict
    centroid_lon: float
    centroid_lat: float
    bbox: LngLatBbox
    area_ha: float
    mean_prob: float
    capture_date: str | None
    thumbnail: bytes | None


def pick_scan(conn: sqlite3.Connection, scan_id: int | None) -> int | None:
    """The given scan (checked), else the latest finished scan, else None meaning all detections."""
    if scan_id is not None:
        row = conn.execute("SELECT id FROM scans WHERE id = ?", (scan_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"scan {scan_id} does not exist")
        return scan_id
    row = conn.execute(
        "SELECT id FROM scans WHERE status = 'finished' ORDER BY finished_at DESC, id DESC LIMIT 1"
    ).fetchone()
    return int(row["id"]) if row else None


_COLUMNS = (
    "d.id, d.scan_id, s.imagery_source_id, s.zoom, d.geometry_geojson, d.centroid_lon, d.centroid_lat,"
    " d.west, d.south, d.east, d.north, d.area_ha, d.mean_prob, d.capture_date"
)
_SELECT = f"SELECT {_COLUMNS}, d.thumbnail FROM detections d JOIN scans s ON s.id = d.scan_id"
_SELECT_NO_THUMB = f"SELECT {_COLUMNS}, NULL AS thumbnail FROM detections d JOIN scans s ON s.id = d.scan_id"


def _site(row: sqlite3.Row) -> Site:
    try:
        geometry = json.loads(row["geometry_geojson"])
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"detection {row['id']}: geometry is not valid GeoJSON ({exc})") from exc
    return Site(
        id=int(row["id"]),
        scan_id=int(row["scan_id"]),
        imagery_source_id=str(row["imagery_source_id"]),
        zoom=int(row["zoom"]),
        geometry=geometry,
        centroid_lon=float(row["centroid_lon"]),
        centroid_lat=float(row["centroid_lat"]),
        bbox=LngLatBbox(row["west"], row["south"], row["east"], row["north"]),
        area_ha=float(row["area_ha"]),
        mean_prob=float(row["mean_prob"]),
        capture_date=row["capture_date"],
        thumbnail=row["thumbnail"],
    )


def _scope(scan_id: int | None) -> tuple[str, tuple]:
    return ("WHERE d.scan_id = ?", (scan_id,)) if scan_id is not None else ("", ())


def select_fragments(conn: sqlite3.Connection, choice: FragmentChoice, scan_id: int | None) -> list[Site]:
    """The detections named or ranked by the article, in story order; unknown ids are refused by name."""
    where, args = _scope(scan_id)
    scope_name = f"scan {scan_id}" if scan_id is not None else "the database"
    if choice.ids:
        marks = ",".join("?" * len(choice.ids))
        clause = f"{where} AND d.id IN ({marks})" if where else f"WHERE d.id IN ({marks})"
        rows = conn.execute(f"{_SELECT} {clause}", args + tuple(choice.ids)).fetchall()
        by_id = {int(r["id"]): _site(r) for r in rows}
        missing = [i for i in choice.ids if i not in by_id]
        if missing:
            raise NotFoundError(
                f"fragment id(s) {', '.join(map(str, missing))} are not detections of {scope_name}"
            )
        return [by_id[i] for i in choice.ids]
    order = "d.area_ha DESC, d.id" if choice.rank_by == "largest" else "d.mean_prob DESC, d.area_ha DESC, d.id"
    rows = conn.execute(f"{_SELECT} {where} ORDER BY {order} LIMIT ?", args + (choice.count,)).fetchall()
    if not rows:
        raise NotFoundError(f"no detections in {scope_name}: nothing to tell a story with")
    return [_site(r) for r in rows]


def select_map_sites(conn: sqlite3.Connection, scan_id: int | None) -> list[Site]:
    """Every detection to draw on the map (largest first, bounded)."""
    where, args = _scope(scan_id)
    rows = conn.execute(
        f"{_SELECT_NO_THUMB} {where} ORDER BY d.area_ha DESC, d.id LIMIT ?", args + (MAX_MAP_DETECTIONS,)
    ).fetchall()
    return [_site(r) for r in rows]
