"""'More like this' on the map: the places of a scan most like some detections, from the scan's tile embeddings.

The search itself is ``results.similar``. Loading a scan's embeddings and building its index takes a while on
a large scan, so each app keeps the last few in a small cache keyed by scan and finished-tile count (a resumed
scan that wrote more tiles gets a fresh index).
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Sequence

from amberwatch.errors import InvalidInputError
from amberwatch.results.similar import Place, ScanVectors, build_query, load_scan_vectors, rank_places
from amberwatch.results.store import count_finished_tiles, get_detection
from amberwatch.results.vector_index import VectorIndex, build_index

DEFAULT_TOP = 10
MAX_TOP = 100
MAX_QUERIES = 20
CACHE_SCANS = 4


class VectorCache:
    """Per-process cache of (scan id, finished tiles) -> (embeddings, index), the least recently used dropped."""

    def __init__(self, size: int = CACHE_SCANS) -> None:
        """An empty cache holding up to ``size`` scans."""
        self.size = size
        self._entries: OrderedDict[tuple[int, int], tuple[ScanVectors, VectorIndex]] = OrderedDict()
        self._lock = threading.Lock()
        self.builds = 0  # how many times embeddings were loaded and indexed (for tests)

    def get(self, conn: sqlite3.Connection, scan_id: int) -> tuple[ScanVectors, VectorIndex]:
        """The scan's embeddings and index, loaded once per scan state; NotFoundError when it kept none."""
        key = (int(scan_id), count_finished_tiles(conn, scan_id))
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        vectors = load_scan_vectors(conn, scan_id)
        entry = (vectors, build_index(vectors.vectors))
        with self._lock:
            self.builds += 1
            for old in [k for k in self._entries if k[0] == key[0]]:
                del self._entries[old]  # an older state of the same scan
            self._entries[key] = entry
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return entry


def tile_chip_url(scan_id: int, tile: str) -> str:
    """URL of the JPEG of a scan's tile ("z/x/y") with some context, from the tile cache."""
    return f"/api/scans/{int(scan_id)}/tiles/{tile}/chip.jpg"


def similar_places(
    conn: sqlite3.Connection,
    cache: VectorCache,
    detections: Sequence[int],
    unlike: Sequence[int] = (),
    top: int = DEFAULT_TOP,
) -> tuple[int, list[Place]]:
    """(scan id, the ``top`` places most like the detections' mean and unlike ``unlike``), in the first one's scan."""
    if not detections:
        raise InvalidInputError("give at least one detection: /api/similar?detection=ID")
    if len(detections) + len(unlike) > MAX_QUERIES:
        raise InvalidInputError(f"at most {MAX_QUERIES} detections per query, got {len(detections) + len(unlike)}")
    if not 1 <= top <= MAX_TOP:
        raise InvalidInputError(f"top must be within 1..{MAX_TOP}, got {top}")
    scan_id = _one_scan(conn, [*detections, *unlike])
    vectors, index = cache.get(conn, scan_id)
    query = build_query(conn, vectors, detections, unlike)
    return scan_id, rank_places(conn, vectors, query, top=top, index=index)


def _one_scan(conn: sqlite3.Connection, detection_ids: Sequence[int]) -> int:
    """The scan of the first detection; NotFoundError / InvalidInputError naming a missing or foreign one."""
    scan_id = get_detection(conn, detection_ids[0]).scan_id
    for detection_id in detection_ids[1:]:
        other = get_detection(conn, detection_id).scan_id
        if other != scan_id:
            raise InvalidInputError(
                f"detection {detection_id} belongs to scan {other}, not scan {scan_id}: query one scan's detections"
            )
    return scan_id
