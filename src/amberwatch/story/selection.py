"""Choosing the story's detections from the project DB: the scan, the fragments and the map's polygons."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from amberwatch.errors import InvalidInputError, NotFoundError
from amberwatch.imagery.types import LngLatBbox
from amberwatch.results.store import latest_scan_id, query_detections, scan_exists
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
        if not scan_exists(conn, scan_id):
            raise NotFoundError(f"scan {scan_id} does not exist")
        return scan_id
    return latest_scan_id(conn, finished=True)


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


def select_fragments(conn: sqlite3.Connection, choice: FragmentChoice, scan_id: int | None) -> list[Site]:
    """The detections named or ranked by the article, in story order; unknown ids are refused by name."""
    scope_name = f"scan {scan_id}" if scan_id is not None else "the database"
    if choice.ids:
        rows = query_detections(conn, scan_id=scan_id, ids=list(choice.ids), thumbnails=True)
        by_id = {int(r["id"]): _site(r) for r in rows}
        missing = [i for i in choice.ids if i not in by_id]
        if missing:
            raise NotFoundError(f"fragment id(s) {', '.join(map(str, missing))} are not detections of {scope_name}")
        return [by_id[i] for i in choice.ids]
    order = "largest" if choice.rank_by == "largest" else "likeliest"
    rows = query_detections(conn, scan_id=scan_id, order=order, limit=choice.count, thumbnails=True)
    if not rows:
        raise NotFoundError(f"no detections in {scope_name}: nothing to tell a story with")
    return [_site(r) for r in rows]


def select_map_sites(conn: sqlite3.Connection, scan_id: int | None) -> list[Site]:
    """Every detection to draw on the map (largest first, bounded)."""
    rows = query_detections(conn, scan_id=scan_id, order="largest", limit=MAX_MAP_DETECTIONS)
    return [_site(r) for r in rows]
