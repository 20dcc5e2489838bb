"""Similarity search over stored tile embeddings: ranking, exclusion, merging, unlike, errors (real SQLite)."""

from __future__ import annotations

import mercantile
import numpy as np
import pytest

from amberwatch.db import connect
from amberwatch.errors import InvalidInputError, NotFoundError
from amberwatch.results.detections import rebuild_detections
from amberwatch.results.records import ScanParams
from amberwatch.results.similar import Query, detection_query, load_scan_vectors, point_query, rank_places
from amberwatch.results.store import NewScan, TileRow, create_scan, ensure_schema, write_tiles

ZOOM = 18
X0, Y0 = mercantile.tile(26.90, 51.32, ZOOM)[:2]
SIDE = 12
DIMS = 8
PIT = np.eye(DIMS)[0]


def _vector(x: int, y: int) -> np.ndarray:
    """Background tiles point along dims 1..7 at random; 'pit' tiles at (x0+1..2, y0+1) and two other spots along 0."""
    rng = np.random.default_rng(x * 1000 + y)
    v = rng.normal(size=DIMS) * 0.3
    v[1 + (x + y) % (DIMS - 1)] += 1.0
    if (x - X0, y - Y0) in {(1, 1), (2, 1), (8, 8), (9, 8), (5, 10)}:
        v = PIT + rng.normal(size=DIMS) * 0.05
    return v


@pytest.fixture
def db(tmp_path):
    """Scan 1: SIDE x SIDE done tiles with embeddings; a detection over the pit tiles at (1..2, 1); scan 2 without."""
    conn = connect(tmp_path / "p.db")
    ensure_schema(conn)
    scan = NewScan("s", "{}", "test", "src", ZOOM, "7", 0.5, ScanParams(), SIDE * SIDE)
    scan_id = create_scan(conn, scan)
    tiles = []
    for j in range(SIDE):
        for i in range(SIDE):
            x, y = X0 + i, Y0 + j
            grid = np.full((4, 4), 230 if (i, j) in {(1, 1), (2, 1)} else 10, dtype=np.uint8)
            emb = _vector(x, y).astype(np.float16).tobytes()
            tiles.append(
                TileRow(
                    ZOOM,
                    x,
                    y,
                    "done",
                    max_prob=float(grid.max()) / 255,
                    grid_cells=4,
                    grid=grid.tobytes(),
                    embedding=emb,
                )
            )
    write_tiles(conn, scan_id, tiles)
    rebuild_detections(conn, scan_id, min_area_ha=0.0, thumbnails=False)
    create_scan(conn, scan)  # scan 2: no tiles, so no embeddings
    yield conn
    conn.close()


def test_ranks_the_other_pits_and_skips_the_query_neighbourhood(db):
    """A detection over pits finds the other pit tiles first; its own tiles and neighbours are left out."""
    vectors = load_scan_vectors(db, 1)
    assert len(vectors) == SIDE * SIDE and vectors.vectors.dtype == np.float16
    det_id = db.execute("SELECT id FROM detections WHERE scan_id = 1").fetchone()[0]
    rows, place = detection_query(db, vectors, det_id)
    assert len(rows) == 2
    places = rank_places(db, vectors, Query(rows, np.zeros((0, DIMS)), (place,)), top=3)
    tiles = [tuple(int(v) for v in p.tile.split("/")[1:]) for p in places]
    # (8, 8) and (9, 8) touch: one place of 2 tiles; then (5, 10)
    assert tiles[:2] in ([(X0 + 8, Y0 + 8), (X0 + 5, Y0 + 10)], [(X0 + 9, Y0 + 8), (X0 + 5, Y0 + 10)])
    assert places[0].tiles == 2 and places[1].tiles == 1
    assert [p.rank for p in places] == [1, 2, 3]
    assert places[0].score >= places[1].score >= places[2].score
    assert places[0].detection_id is None
    assert all(abs(p.lon - place[0]) > 0.001 or abs(p.lat - place[1]) > 0.001 for p in places)


def test_a_point_query_finds_its_twins_and_the_detection_there(db):
    """--at on a pit tile far from the detection ranks the detection's tiles, with its id."""
    vectors = load_scan_vectors(db, 1)
    w, s, e, n = mercantile.bounds(X0 + 5, Y0 + 10, ZOOM)
    rows, place = point_query(vectors, (s + n) / 2, (w + e) / 2)
    places = rank_places(db, vectors, Query(rows, np.zeros((0, DIMS)), (place,)), top=2)
    det_id = db.execute("SELECT id FROM detections WHERE scan_id = 1").fetchone()[0]
    assert det_id in [p.detection_id for p in places]


def test_unlike_pushes_away(db):
    """Unlike a pit: the first place is no longer a pit tile."""
    vectors = load_scan_vectors(db, 1)
    probe = np.ones((1, DIMS)) * 0.2
    pit = PIT[None].astype(np.float16)
    liked = rank_places(db, vectors, Query(probe + pit, np.zeros((0, DIMS))), top=1)
    unliked = rank_places(db, vectors, Query(probe + pit, pit, unlike_weight=1.0), top=1)
    assert liked[0].tile != unliked[0].tile


def test_errors_name_the_problem(db):
    """No embeddings, a detection of another scan, a point off the scan, top < 1, cancelling queries."""
    with pytest.raises(NotFoundError, match="scan 2 kept no tile embeddings"):
        load_scan_vectors(db, 2)
    vectors = load_scan_vectors(db, 1)
    with pytest.raises(NotFoundError, match="detection 999 does not exist"):
        detection_query(db, vectors, 999)
    with pytest.raises(NotFoundError, match="is not on an embedded tile of scan 1"):
        point_query(vectors, 10.0, 10.0)
    one = PIT[None]
    with pytest.raises(InvalidInputError, match="--top must be at least 1"):
        rank_places(db, vectors, Query(one, np.zeros((0, DIMS))), top=0)
    with pytest.raises(InvalidInputError, match="cancel out"):
        rank_places(db, vectors, Query(one, one, unlike_weight=1.0), top=1)
