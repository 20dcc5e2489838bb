"""Choosing the story's detections from the project DB: the scan, the fragments and the map's polygons.

A site is a ``results.public.PublicDetection``: the story shows what the public may see, never a site a reviewer
found not mining.
"""

from __future__ import annotations

import sqlite3
import warnings

from amberwatch.errors import AmberwatchWarning, InvalidInputError, NotFoundError
from amberwatch.results.public import PublicDetection, public_detections
from amberwatch.results.store import latest_scan_id, scan_exists
from amberwatch.review.feedback import review_states
from amberwatch.story.article import FragmentChoice

MAX_MAP_DETECTIONS = 5000


def pick_scan(conn: sqlite3.Connection, scan_id: int | None) -> int | None:
    """The given scan (checked), else the latest finished scan, else None meaning all detections."""
    if scan_id is not None:
        if not scan_exists(conn, scan_id):
            raise NotFoundError(f"scan {scan_id} does not exist")
        return scan_id
    return latest_scan_id(conn, finished=True)


def select_fragments(conn: sqlite3.Connection, choice: FragmentChoice, scan_id: int | None) -> list[PublicDetection]:
    """The detections named or ranked by the article, in story order, never one a reviewer found not mining."""
    scope_name = f"scan {scan_id}" if scan_id is not None else "the database"
    reviews = review_states(conn)
    if choice.ids:
        found = public_detections(
            conn, reviews, scan_id=scan_id, ids=list(choice.ids), thumbnails=True, include_removed=True
        )
        by_id = {d.id: d for d in found}
        missing = [i for i in choice.ids if i not in by_id]
        if missing:
            raise NotFoundError(f"fragment id(s) {', '.join(map(str, missing))} are not detections of {scope_name}")
        rejected = [i for i in choice.ids if by_id[i].review.removed]
        if rejected:
            raise InvalidInputError(
                f"fragment id(s) {', '.join(map(str, rejected))} were reviewed as not mining: leave them out of the "
                "article"
            )
        return [by_id[i] for i in choice.ids]
    order = "largest" if choice.rank_by == "largest" else "likeliest"
    ranked = public_detections(conn, reviews, scan_id=scan_id, order=order, places=False)
    chosen = [d.id for d in ranked][: choice.count]
    if not chosen:
        raise NotFoundError(f"no detections in {scope_name} (reviewed not-mining sites left out): nothing to tell")
    by_id = {d.id: d for d in public_detections(conn, reviews, ids=chosen, thumbnails=True)}
    return [by_id[i] for i in chosen]


def select_map_sites(conn: sqlite3.Connection, scan_id: int | None) -> list[PublicDetection]:
    """Every detection to draw on the map (largest first), less reviewed not-mining sites; warns when capped."""
    sites = public_detections(conn, review_states(conn), scan_id=scan_id, order="largest")
    if len(sites) > MAX_MAP_DETECTIONS:
        warnings.warn(
            AmberwatchWarning(
                f"the story map shows the {MAX_MAP_DETECTIONS:,} largest of {len(sites):,} sites; pass --scan to "
                "tell one scan's story"
            ),
            stacklevel=2,
        )
    return sites[:MAX_MAP_DETECTIONS]
