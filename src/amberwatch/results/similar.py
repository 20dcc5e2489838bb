"""'More like this': rank a scan's tiles by how much their embeddings look like a query, as places on the map.

Every tile a scan classifies keeps a compact embedding (``scan_tiles.embedding``: float16, a few dozen
values, an affine map of the backbone's features pooled over the tile; see
``model.pretrained.PretrainedClassifier.embed``). A query is the mean of some embeddings (detections,
points, images) minus a share of the mean of others (``unlike``); tiles are ranked by cosine similarity.
Hits within ``exclude_m`` of a query place or of a query detection's extent (its own tiles) are left out, and hits
on touching tiles merge into one place.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field

import mercantile
import numpy as np

from amberwatch.errors import InvalidInputError, NotFoundError
from amberwatch.results.store import get_detection, get_scan, query_detections, tile_embeddings
from amberwatch.results.vector_index import VectorIndex, build_index

DEFAULT_EXCLUDE_M = 100.0
DEFAULT_UNLIKE_WEIGHT = 0.5
_EARTH_M_PER_DEG = 111_320.0


@dataclass
class ScanVectors:
    """The embeddings of a scan's tiles: tile columns/rows at one zoom and one vector per tile."""

    scan_id: int
    zoom: int
    xy: np.ndarray  # (N, 2) int64 tile x, y
    vectors: np.ndarray  # (N, dims) float16
    _where: dict[tuple[int, int], int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._where = {(int(x), int(y)): i for i, (x, y) in enumerate(self.xy)}

    def __len__(self) -> int:
        return len(self.xy)

    def index_of(self, x: int, y: int) -> int | None:
        """Row of tile (x, y), or None when the scan kept no embedding for it."""
        return self._where.get((int(x), int(y)))


@dataclass(frozen=True)
class Query:
    """What to look for: vectors to be like, vectors to be unlike, and places whose surroundings are left out."""

    like: np.ndarray  # (n, dims)
    unlike: np.ndarray  # (m, dims), possibly empty
    near_lonlat: tuple[tuple[float, float], ...] = ()  # query places (degrees)
    unlike_weight: float = DEFAULT_UNLIKE_WEIGHT
    # the query detections' extents (west, south, east, north): a tile touching one, grown by exclude_m, is the
    # query site itself (a large site reaches well beyond exclude_m of its centroid), never a result
    near_boxes: tuple[tuple[float, float, float, float], ...] = ()

    def vector(self) -> np.ndarray:
        """The unit-length search vector: mean of like, minus unlike_weight x mean of unlike (each normalised)."""
        q = _unit(_unit(self.like.astype(np.float32)).mean(axis=0))
        if len(self.unlike):
            q = q - self.unlike_weight * _unit(_unit(self.unlike.astype(np.float32)).mean(axis=0))
        norm = float(np.linalg.norm(q))
        if not math.isfinite(norm) or norm == 0.0:
            raise InvalidInputError("the query vectors cancel out: give other --detection / --unlike choices")
        return (q / norm).astype(np.float32)


@dataclass(frozen=True)
class Place:
    """One ranked place: its best tile, similarity score and the scan's detection there (if any)."""

    rank: int
    lat: float
    lon: float
    score: float
    tile: str  # "z/x/y" of the best tile
    tiles: int  # touching tiles merged into this place
    detection_id: int | None

    def as_dict(self) -> dict:
        """Plain dict for JSON."""
        return {
            "rank": self.rank,
            "lat": round(self.lat, 6),
            "lon": round(self.lon, 6),
            "score": round(self.score, 4),
            "tile": self.tile,
            "tiles": self.tiles,
            "detection_id": self.detection_id,
        }


def load_scan_vectors(conn: sqlite3.Connection, scan_id: int) -> ScanVectors:
    """The embeddings a scan kept; NotFoundError naming the scan when it kept none."""
    scan = get_scan(conn, scan_id)
    xy, vectors = tile_embeddings(conn, scan_id)
    if len(xy) == 0:
        raise NotFoundError(
            f"scan {scan_id} kept no tile embeddings (its model v{scan.model_version} has none, or no tile "
            f"was classified): rescan it with a pretrained model ('amberwatch rescan {scan_id} --model N')"
        )
    return ScanVectors(int(scan_id), scan.zoom, xy, vectors)


def detection_query(conn: sqlite3.Connection, vectors: ScanVectors, detection_id: int) -> tuple[np.ndarray, tuple]:
    """(embeddings of the tiles under a detection, its centroid) for a query; errors name the detection."""
    det = get_detection(conn, detection_id)
    if det.scan_id != vectors.scan_id:
        raise InvalidInputError(
            f"detection {detection_id} belongs to scan {det.scan_id}, not scan {vectors.scan_id}: "
            f"give --scan {det.scan_id}"
        )
    rows = tiles_under(vectors, det.bbox.as_tuple())
    if not rows:
        raise NotFoundError(f"detection {detection_id}: no embedded tile of scan {vectors.scan_id} lies under it")
    return vectors.vectors[rows], (det.centroid_lon, det.centroid_lat)


def point_query(vectors: ScanVectors, lat: float, lon: float) -> tuple[np.ndarray, tuple]:
    """(embedding of the tile at a point, the point) for a query; NotFoundError when the scan has no tile there."""
    tile = mercantile.tile(lon, lat, vectors.zoom)
    i = vectors.index_of(tile.x, tile.y)
    if i is None:
        raise NotFoundError(f"point {lat:.6f},{lon:.6f} is not on an embedded tile of scan {vectors.scan_id}")
    return vectors.vectors[[i]], (float(lon), float(lat))


def build_query(
    conn: sqlite3.Connection,
    vectors: ScanVectors,
    detections: Sequence[int] = (),
    unlike: Sequence[int] = (),
    *,
    points: Sequence[tuple[float, float]] = (),
    embedded: np.ndarray | None = None,
) -> Query:
    """The Query of some detections, points (lat, lon) and already embedded vectors, unlike some detections."""
    like, near, boxes = [], [], []
    for detection_id in detections:
        rows, place = detection_query(conn, vectors, detection_id)
        like.append(rows)
        near.append(place)
        boxes.append(get_detection(conn, detection_id).bbox.as_tuple())
    for lat, lon in points:
        rows, place = point_query(vectors, lat, lon)
        like.append(rows)
        near.append(place)
    if embedded is not None:
        like.append(embedded)
    unlike_rows = [detection_query(conn, vectors, d)[0] for d in unlike]
    return Query(
        like=np.concatenate(like),
        unlike=np.concatenate(unlike_rows) if unlike_rows else np.zeros((0, vectors.vectors.shape[1]), np.float16),
        near_lonlat=tuple(near),
        near_boxes=tuple(boxes),
    )


def tiles_under(vectors: ScanVectors, bbox: tuple[float, float, float, float]) -> list[int]:
    """Rows of the scan's embedded tiles under a lon/lat bbox (west, south, east, north)."""
    return [i for t in mercantile.tiles(*bbox, vectors.zoom) if (i := vectors.index_of(t.x, t.y)) is not None]


def tile_centre(zoom: int, x: int, y: int) -> tuple[float, float]:
    """(lon, lat) of a tile's centre."""
    b = mercantile.bounds(x, y, zoom)
    return (b.west + b.east) / 2, (b.south + b.north) / 2


def rank_places(
    conn: sqlite3.Connection,
    vectors: ScanVectors,
    query: Query,
    *,
    top: int = 10,
    exclude_m: float = DEFAULT_EXCLUDE_M,
    index: VectorIndex | None = None,
) -> list[Place]:
    """The ``top`` places most like the query, best first, away from the query's places, touching hits merged."""
    if top < 1:
        raise InvalidInputError(f"--top must be at least 1, got {top}")
    index = index or build_index(vectors.vectors)
    q = query.vector()
    want = min(len(vectors), max(64, top * 16))
    while True:
        scores, rows = index.search(q, want)
        places = _merge(vectors, scores, rows, query, exclude_m, top)
        if len(places) >= top or want >= len(vectors):
            break
        want = min(len(vectors), want * 4)
    return [_place(conn, vectors, rank, group) for rank, group in enumerate(places[:top], start=1)]


def _merge(
    vectors: ScanVectors,
    scores: np.ndarray,
    rows: np.ndarray,
    query: Query,
    exclude_m: float,
    top: int,
) -> list[list[tuple[float, int]]]:
    """Group ranked hits into places: a hit touching a listed place joins it, until a place beyond the top.

    Hits near the query's places or on its detections' own tiles are left out."""
    groups: list[list[tuple[float, int]]] = []
    owner: dict[tuple[int, int], int] = {}
    for score, row in zip(scores.tolist(), rows.tolist()):
        x, y = (int(v) for v in vectors.xy[row])
        if _near(vectors.zoom, x, y, query.near_lonlat, exclude_m) or _on_box(
            vectors.zoom, x, y, query.near_boxes, exclude_m
        ):
            continue
        touching = {owner[(x + dx, y + dy)] for dx in (-1, 0, 1) for dy in (-1, 0, 1) if (x + dx, y + dy) in owner}
        if touching:
            g = min(touching)
            groups[g].append((score, row))
        elif len(groups) < top:
            g = len(groups)
            groups.append([(score, row)])
        else:
            break  # a place beyond the top: hits ranked lower belong to no listed place
        owner[(x, y)] = g
    return groups


def _near(zoom: int, x: int, y: int, near: Sequence[tuple[float, float]], exclude_m: float) -> bool:
    """True when the tile's centre is within exclude_m (plus half a tile) of a query place."""
    if not near:
        return False
    b = mercantile.bounds(x, y, zoom)
    lon, lat = tile_centre(zoom, x, y)
    half_tile_m = (b.north - b.south) / 2 * _EARTH_M_PER_DEG
    for qlon, qlat in near:
        dx = (lon - qlon) * _EARTH_M_PER_DEG * math.cos(math.radians(qlat))
        dy = (lat - qlat) * _EARTH_M_PER_DEG
        if math.hypot(dx, dy) <= exclude_m + half_tile_m:
            return True
    return False


def _on_box(zoom: int, x: int, y: int, boxes: Sequence[tuple[float, float, float, float]], exclude_m: float) -> bool:
    """True when the tile touches a query detection's extent grown by exclude_m."""
    b = mercantile.bounds(x, y, zoom)
    for west, south, east, north in boxes:
        pad_lat = exclude_m / _EARTH_M_PER_DEG
        pad_lon = pad_lat / max(math.cos(math.radians((south + north) / 2)), 1e-6)
        if (
            b.east >= west - pad_lon
            and b.west <= east + pad_lon
            and b.north >= south - pad_lat
            and b.south <= north + pad_lat
        ):
            return True
    return False


def _place(conn: sqlite3.Connection, vectors: ScanVectors, rank: int, group: list[tuple[float, int]]) -> Place:
    score, row = max(group)
    x, y = (int(v) for v in vectors.xy[row])
    b = mercantile.bounds(x, y, vectors.zoom)
    lon, lat = tile_centre(vectors.zoom, x, y)
    hits = query_detections(conn, scan_id=vectors.scan_id, bbox=(b.west, b.south, b.east, b.north), order="largest")
    return Place(rank, lat, lon, float(score), f"{vectors.zoom}/{x}/{y}", len(group), hits[0].id if hits else None)


def _unit(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(norm > 0, norm, 1.0)
