"""Choosing the story's detections from the project DB: the scan, the fragments and the map's polygons."""

from __future__ import annotations

import json
import sqlite3
import warnings
from dataclasses import dataclass

from amberwatch.errors import AmberwatchWarning, InvalidInputError, NotFoundError
from amberwatch.imagery.types import LngLatBbox
from amberwatch.results.store import latest_scan_id, query_detections, scan_exists
from amberwatch.story.article import FragmentChoice
from amberwatch.web.feedback import review_states

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
    confirmed: bool = False  # a reviewer accepted a reader's "this is mining"


def pick_scan(conn: sqlite3.Connection, scan_id: int | None) -> int | None:
    """The given scan (checked), else the latest finished scan, else None meaning all detections."""
    if scan_id is not None:
        if not scan_exists(conn, scan_id):
            raise NotFoundError(f"scan {scan_id} does not exist")
        return scan_id
    return latest_scan_id(conn, finished=True)


def _site(row: sqlite3.Row, reviews: dict[int, tuple[str | None, int]] | None = None) -> Site:
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
        confirmed=(reviews or {}).get(int(row["id"]), (None, 0))[0] == "confirmed",
    )


def select_fragments(conn: sqlite3.Connection, choice: FragmentChoice, scan_id: int | None) -> list[Site]:
    """The detections named or ranked by the article, in story order, never one a reviewer found not mining."""
    scope_name = f"scan {scan_id}" if scan_id is not None else "the database"
    reviews = review_states(conn)
    if choice.ids:
        rows = query_detections(conn, scan_id=scan_id, ids=list(choice.ids), thumbnails=True)
        by_id = {int(r["id"]): _site(r, reviews) for r in rows}
        missing = [i for i in choice.ids if i not in by_id]
        if missing:
            raise NotFoundError(f"fragment id(s) {', '.join(map(str, missing))} are not detections of {scope_name}")
        rejected = [i for i in choice.ids if _rejected(reviews, i)]
        if rejected:
            raise InvalidInputError(
                f"fragment id(s) {', '.join(map(str, rejected))} were reviewed as not mining: leave them out of the "
                "article"
            )
        return [by_id[i] for i in choice.ids]
    order = "largest" if choice.rank_by == "largest" else "likeliest"
    ranked = [int(r["id"]) for r in query_detections(conn, scan_id=scan_id, order=order)]
    chosen = [i for i in ranked if not _rejected(reviews, i)][: choice.count]
    if not chosen:
        raise NotFoundError(f"no detections in {scope_name} (reviewed not-mining sites left out): nothing to tell")
    by_id = {int(r["id"]): _site(r, reviews) for r in query_detections(conn, ids=chosen, thumbnails=True)}
    return [by_id[i] for i in chosen]


def select_map_sites(conn: sqlite3.Connection, scan_id: int | None) -> list[Site]:
    """Every detection to draw on the map (largest first), less reviewed not-mining sites; warns when capped."""
    reviews = review_states(conn)
    rows = [r for r in query_detections(conn, scan_id=scan_id, order="largest") if not _rejected(reviews, r["id"])]
    if len(rows) > MAX_MAP_DETECTIONS:
        warnings.warn(
            AmberwatchWarning(
                f"the story map shows the {MAX_MAP_DETECTIONS:,} largest of {len(rows):,} sites; pass --scan to "
                "tell one scan's story"
            ),
            stacklevel=2,
        )
    return [_site(r, reviews) for r in rows[:MAX_MAP_DETECTIONS]]


def _rejected(reviews: dict[int, tuple[str | None, int]], detection_id: int) -> bool:
    return reviews.get(int(detection_id), (None, 0))[0] == "not_mining"
