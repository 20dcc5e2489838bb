"""process_unit reads a block's tiles while the blocks before it are classified, with the results of reading first."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import numpy as np
import pytest

from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.decode import encode_png
from amberwatch.imagery.open import open_ref
from amberwatch.imagery.types import ImageryRef
from amberwatch.model import load
from amberwatch.scan.engine import scan_context
from amberwatch.scan.tiling import Unit
from amberwatch.scan.worker import (
    ScanContext,
    first_reads,
    process_unit,
    release,
    remember_model,
    remember_source,
    unit_blocks,
)
from tests.scan.conftest import ZOOM, put_mosaic_tiles, tile_origin

# Units of SIDE x SIDE tiles in blocks of 2 x 2: the timed one has nine blocks and reads 8 x 8 tiles; the others
# are 4 x 4 tiles (four blocks, 6 x 6 tiles read).
SIDE = 6


@pytest.fixture(scope="module")
def clf():
    """The bundled model, seeded into this process's worker model cache (its int8 backbone, as scans use), its
    sessions built on a frame of one block (2 x 2 tiles and the margin) so that no test times their building."""
    model = load()
    remember_model(None, model.version, model, int8=True)
    side_px, margin_cells = 2 * 256 + 2 * model.context_px, model.context_px // model.cell_px
    model.grid_and_cell_embeddings(np.zeros((side_px, side_px, 3), np.uint8), margin_cells=margin_cells)
    return model


def _unit(offset: tuple[int, int], side: int = 4) -> Unit:
    x0, y0 = tile_origin(offset)
    x0, y0 = x0 // 8 * 8, y0 // 8 * 8
    tiles = tuple((x0 + i, y0 + j) for j in range(side) for i in range(side))
    return Unit(parent=(x0 >> 3, y0 >> 3, ZOOM - 3), zoom=ZOOM, tiles=tiles)


def _context(clf, server, cache_path, **http) -> ScanContext:
    """The engine's context for the bundled int8 model, in blocks of 2 x 2 tiles at 256 model px a tile."""
    context = scan_context(
        clf,
        imagery=ImageryRef(server.url, tuple(http.items())),
        cache_path=str(cache_path),
        model_path=None,
        model_version=clf.version,
        zoom=ZOOM,
        tile_res_m_per_px=clf.resolution_m_per_px,
        int8=True,
    )
    return replace(context, tile_px=256, block_tiles=2)


def _one_block_at_a_time(unit: Unit, context: ScanContext):
    """The unit's rows with each block processed alone, read before it is classified: the sequential result."""
    rows = []
    for tiles in unit_blocks(unit, unit.tiles, context.block_tiles).values():
        rows += process_unit(unit, context, tuple(tiles)).tiles
    return rows


@pytest.mark.slow  # about 5 s, and timed: the slow tier
def test_blocks_are_classified_while_later_blocks_are_fetched(clf, tile_server, tmp_path):
    unit = _unit((96, 8), SIDE)
    x0, y0 = unit.tiles[0]
    put_mosaic_tiles(tile_server, x0 - 1, y0 - 1, SIDE + 2, SIDE + 2)
    try:
        tile_server.delay_s = 0.07  # a far server: 64 tiles, 4 at a time, take 16 x 0.07 s (about the classifying)
        http = {"max_concurrency": 4, "requests_per_s": 1000.0}
        started = time.perf_counter()
        result = process_unit(unit, _context(clf, tile_server, tmp_path / "cold.sqlite", **http))
        wall_s = time.perf_counter() - started
    finally:
        release()
    started = time.perf_counter()
    with TileCache(tmp_path / "reading-alone.sqlite") as cache:
        source = open_ref(ImageryRef(tile_server.url, tuple(http.items())), cache=cache)
        keys = [(ZOOM, x0 + i, y0 + j) for j in range(-1, SIDE + 1) for i in range(-1, SIDE + 1)]
        assert all(image is not None for _, image in source.read_tiles(keys))
        source.close()
    reading_s = time.perf_counter() - started
    assert [t.status for t in result.tiles] == ["done"] * SIDE**2
    assert result.reads_ok == (SIDE + 2) ** 2
    # The first block waits for its 16 tiles of 64; the other blocks' tiles come while blocks are classified, and
    # most of the classifying hides behind the reading (read first, the unit would take reading + predict).
    assert result.fetch_s < 0.6 * reading_s, (result.fetch_s, reading_s)
    assert wall_s < reading_s + 0.6 * result.predict_s, (wall_s, reading_s, result.predict_s)


def test_overlapped_results_are_the_sequential_ones_with_failures_and_warnings(clf, tile_server, tmp_path):
    unit = _unit((104, 8))
    x0, y0 = unit.tiles[0]
    put_mosaic_tiles(tile_server, x0 - 1, y0 - 1, 6, 6)
    failing, blank, missing = (ZOOM, x0 + 1, y0 + 1), (ZOOM, x0 + 3, y0 + 3), (ZOOM, x0 + 4, y0 - 1)
    tile_server.tiles[blank] = encode_png(np.full((256, 256, 3), 90, np.uint8))
    del tile_server.tiles[missing]  # a ring tile: 404, no imagery
    try:
        tile_server.faults[failing] = ["403"] * 4  # once for each block that reads it, alone
        sequential = _one_block_at_a_time(unit, _context(clf, tile_server, tmp_path / "sequential.sqlite"))
        tile_server.faults[failing] = ["403"]
        asked = len(tile_server.tile_requests())
        result = process_unit(unit, _context(clf, tile_server, tmp_path / "overlapped.sqlite"))
    finally:
        release()
    requests = tile_server.tile_requests()[asked:]
    assert len(requests) == len(set(requests)) == 6 * 6  # every tile of the unit and its ring read once
    assert result.tiles == sequential  # the same rows in the same order: statuses, errors and grids byte for byte
    statuses = {(t.x, t.y): t.status for t in result.tiles}
    assert statuses[(x0 + 3, y0 + 3)] == "empty"
    failed = sorted(k for k, s in statuses.items() if s == "failed")
    assert failed == [(x0 + i, y0 + j) for i in range(3) for j in range(3)]  # the failing tile and its ring
    assert (result.reads_ok, result.reads_failed, result.reads_unreachable) == (6 * 6 - 1, 1, 0)
    assert result.warnings == {"BlankTileWarning": 1, "NoImageryWarning": 1}


def test_a_reader_that_breaks_raises_in_process_unit_and_stops(clf, tile_server, tmp_path):
    unit = _unit((112, 8))
    context = _context(clf, tile_server, tmp_path / "closed.sqlite")
    cache = TileCache(context.cache_path)
    source = open_ref(context.imagery, cache=cache)
    cache.close()  # a bug in the reader: every read of the cache raises
    remember_source(context, cache, source)
    try:
        with pytest.raises(Exception, match="closed"):
            process_unit(unit, context)
    finally:
        source.close()
        release()
    assert not [t for t in threading.enumerate() if t.name == "amberwatch-unit-reader"]


def test_first_reads_reads_each_tile_once_in_block_order():
    reads = [{(0, 0), (1, 0)}, {(1, 0), (2, 0)}, {(2, 0)}, {(3, 0), (0, 0)}]
    assert first_reads(reads) == [[(0, 0), (1, 0)], [(2, 0)], [], [(3, 0)]]
