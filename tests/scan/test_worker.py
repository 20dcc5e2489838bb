"""The unit of work is pure and picklable (ready for Dask): no project DB, results by value."""

from __future__ import annotations

import pickle

import numpy as np
import psutil
import pytest

from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.open import open_source
from amberwatch.imagery.types import GeoImage, ImageryRef, LngLatBbox
from amberwatch.model import load
from amberwatch.scan.tiling import Unit
from amberwatch.scan.worker import ScanContext, cells_with_imagery, neighbours, process_unit, release
from tests.scan.conftest import ZOOM, put_image_tiles, texty_image, tile_origin


def test_process_unit_round_trips_through_pickle_and_needs_no_db(tile_server, tmp_path):
    x0, y0 = tile_origin((80, 0))
    x0, y0 = x0 // 4 * 4, y0 // 4 * 4  # the corner of a block of 4 x 4 tiles
    put_image_tiles(tile_server, texty_image("positive2"), x0, y0, 3, 3)
    clf = load()
    unit = Unit(parent=(x0 >> 3, y0 >> 3, ZOOM - 3), zoom=ZOOM, tiles=((x0 + 1, y0 + 1), (x0 + 2, y0 + 1)))
    context = ScanContext(
        imagery=ImageryRef(tile_server.url),
        cache_path=str(tmp_path / "cache.mbtiles"),
        model_path=None,
        model_version=clf.version,
        zoom=ZOOM,
        tile_px=256,
        margin_px=clf.context_px,
        cell_px=clf.cell_px,
        block_tiles=4,
    )
    fn, unit2, context2 = pickle.loads(pickle.dumps((process_unit, unit, context)))
    try:
        result = fn(unit2, context2)
        alone = process_unit(unit, context, ((x0 + 2, y0 + 1),))  # as a resumed scan would do it
    finally:
        release()
    result = pickle.loads(pickle.dumps(result))
    assert [(t.x, t.y, t.status) for t in result.tiles] == [(x0 + 1, y0 + 1, "done"), (x0 + 2, y0 + 1, "done")]
    assert not list(tmp_path.glob("*.db"))  # workers never create or write a project DB
    assert [(t.x, t.grid) for t in alone.tiles] == [(x0 + 2, result.tiles[1].grid)]
    # The grids equal predict_grid on the AOI's tiles of the block (here the unit's two) with the model's margin of
    # real imagery around them, whatever tiles are still to do.
    with TileCache(tmp_path / "cache.mbtiles") as cache:
        source = open_source(tile_server.url, cache=cache)
        mosaic = np.zeros((768, 1024, 3), np.uint8)
        for x, y in set(neighbours(x0 + 1, y0 + 1, ZOOM)) | set(neighbours(x0 + 2, y0 + 1, ZOOM)):
            tile = source.read_tile(ZOOM, x, y)  # None beyond the served 3 x 3 tiles: black, as in the worker
            if tile is not None:
                mosaic[(y - y0) * 256 : (y - y0 + 1) * 256, (x - x0) * 256 : (x - x0 + 1) * 256] = tile.pixels
        source.close()
    m = clf.context_px
    expected = clf.predict_grid(mosaic[256 - m : 512 + m, 256 - m : 768 + m])
    off = m // clf.cell_px
    g = 256 // clf.cell_px
    for k, tile in enumerate(result.tiles):
        got = np.frombuffer(tile.grid, np.uint8).reshape(g, g)
        want = np.rint(expected[off : off + g, off + k * g : off + (k + 1) * g] * 255).astype(int)
        assert np.abs(got.astype(int) - want).max() <= 1


def test_resample_is_pillows_bilinear_within_one_grey_level():
    from PIL import Image

    from amberwatch.scan.worker import resample

    rng = np.random.default_rng(3)
    smooth = np.kron(rng.integers(0, 255, (40, 36, 3)), np.ones((8, 8, 1))).astype(np.uint8)  # edges and flats
    pixels = np.clip(smooth.astype(int) + rng.integers(-20, 20, smooth.shape), 0, 255).astype(np.uint8)
    for height, width in [(280, 252), (217, 301), (320, 288)]:
        ours = resample(pixels, height, width)
        pil = np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR, reducing_gap=None))
        assert ours.shape == (height, width, 3) and ours.dtype == np.uint8 and ours.flags.c_contiguous
        assert int(np.abs(ours.astype(int) - pil.astype(int)).max()) <= 1


def test_local_scan_workers_fork_from_a_server_with_their_modules_loaded():
    import multiprocessing
    from multiprocessing import forkserver

    from amberwatch.scan.engine import start_worker_server

    if "forkserver" not in multiprocessing.get_all_start_methods():
        pytest.skip("no forkserver on this platform: workers are spawned")
    start_worker_server()
    start_worker_server()  # already running: nothing more
    server = forkserver._forkserver
    assert "amberwatch.scan.worker" in server._preload_modules
    assert server._forkserver_pid is not None and psutil.pid_exists(server._forkserver_pid)


def test_cells_with_imagery_come_from_the_tiles_own_mask():
    valid = np.ones((256, 256), dtype=bool)
    valid[:, :100] = False  # west margin without imagery
    image = GeoImage(np.zeros((256, 256, 3), np.uint8), LngLatBbox(0, 0, 1, 1), 0.4, "s", valid=valid)
    cells, blob = cells_with_imagery(np.full((8, 8), 0.9), image)
    mask = np.frombuffer(blob, np.uint8).reshape(8, 8)
    assert (mask[:, :3] == 0).all() and (mask[:, 3:] == 1).all()  # column 3 has 28 of 32 pixels: it counts
    assert (cells[:, :3] == 0).all() and (cells[:, 3:] == 0.9).all()  # no probability on no-data
    _, blob7 = cells_with_imagery(np.ones((7, 7)), image)  # a tile resampled to 7 cells a side
    assert (np.frombuffer(blob7, np.uint8).reshape(7, 7).sum(axis=0) == [0, 0, 0, 7, 7, 7, 7]).all()
    full = np.full((8, 8), 0.5)
    assert cells_with_imagery(full, GeoImage(image.pixels, image.bbox, 0.4, "s")) == (full, None)
    valid[:] = True
    valid[:, 10:14] = False  # a sliver under half of one cell: every cell still counts
    assert cells_with_imagery(full, image)[1] is None


def test_free_tiles_are_every_tile_the_kept_tiles_passes_and_reads_give_a_grid_and_no_more():
    from amberwatch.imagery.types import ground_resolution_m_per_px
    from amberwatch.scan.engine import scan_context
    from amberwatch.scan.worker import block_passes, free_tiles, pass_tiles, unit_blocks

    clf = load()
    context = scan_context(
        clf,
        imagery=ImageryRef("http://127.0.0.1:9/{z}/{x}/{y}.png"),  # never read: passes and reads are counted only
        cache_path="unused",
        model_path=None,
        model_version=clf.version,
        zoom=18,
        tile_res_m_per_px=ground_resolution_m_per_px(51.32, 18),
    )
    x0, y0 = 16 * 9000, 16 * 5000
    unit = Unit(
        parent=(x0 >> 4, y0 >> 4, 14), zoom=18, tiles=tuple((x0 + i, y0 + j) for j in range(16) for i in range(16))
    )
    kept = ((x0 + 1, y0 + 1), (x0 + 6, y0 + 7), (x0 + 12, y0 + 3))  # two far corners of one block, one tile of another

    def cost(tiles) -> tuple[set, set]:
        """(the passes, the tiles read) of a fine pass over ``tiles``, block by block."""
        passes, reads = set(), set()
        for block, mine in unit_blocks(unit, tuple(tiles), context.block_tiles).items():
            ran = block_passes(block, mine, context, clf)
            passes.update((block, p) for p in ran)
            reads |= pass_tiles(block, ran, context) | {nb for x, y in mine for nb in neighbours(x, y, 18, 1)}
        return passes, reads

    free = free_tiles(unit, kept, context, clf)
    assert free and not free & set(kept) and len(free) < 128 - 3  # within the two blocks of the kept tiles
    assert cost({*kept, *free}) == cost(kept)  # no backbone pass and no tile read more
    others = [t for t in unit.tiles if t not in free and t not in kept and (t[0] - x0) < 16 and (t[1] - y0) < 8]
    assert all(cost({*kept, t}) != cost(kept) for t in others)  # and every tile of those blocks that would cost more
    quarter = Unit(
        parent=(x0 >> 3, y0 >> 3, 15), zoom=18, tiles=tuple(t for t in unit.tiles if t[0] < x0 + 8 and t[1] < y0 + 8)
    )
    assert free_tiles(quarter, kept[:2], context, clf) == {t for t in free if t in quarter.tiles}  # any unit size


def test_a_coarse_context_reads_its_fine_tiles_at_the_zoom_and_cuts_the_others_from_their_parent_upsampled(
    tile_server, tmp_path
):
    from amberwatch.imagery.decode import encode_png
    from amberwatch.scan.worker import CoarseContext, read_with_coarse, resample

    x0, y0 = tile_origin()
    x0, y0 = x0 & ~1, y0 & ~1  # the first child of z17 tile (x0 / 2, y0 / 2)
    parent = np.ascontiguousarray(texty_image("positive1")[:256, :256])
    own = np.ascontiguousarray(texty_image("negative1")[:256, :256])
    tile_server.tiles[(ZOOM - 1, x0 >> 1, y0 >> 1)] = encode_png(parent)
    for x, y in ((x0, y0), (x0 + 1, y0)):
        tile_server.tiles[(ZOOM, x, y)] = encode_png(own)
    children = [(x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)]
    orphan = (x0 + 2, y0)  # its parent is not served: no imagery, as the parent
    with TileCache(tmp_path / "cache.mbtiles") as cache:
        source = open_source(tile_server.url, cache=cache)
        mark = len(tile_server.tile_requests())
        got = dict(read_with_coarse(source, ZOOM, [*children, orphan], CoarseContext(ZOOM - 1, frozenset({(x0, y0)}))))
        source.close()
    requests = sorted(tile_server.tile_requests()[mark:])
    assert requests == sorted(
        [f"/{ZOOM}/{x0}/{y0}.png", f"/{ZOOM - 1}/{x0 >> 1}/{y0 >> 1}.png", f"/{ZOOM - 1}/{(x0 >> 1) + 1}/{y0 >> 1}.png"]
    )  # the fine tile at the zoom, each parent once; (x0 + 1, y0) is served at the zoom but not in the fine set
    assert set(got) == {(ZOOM, x, y) for x, y in [*children, orphan]} and got[(ZOOM, *orphan)] is None
    assert np.array_equal(got[(ZOOM, x0, y0)].pixels, own)
    up = resample(parent, 512, 512)
    for x, y in children[1:]:
        image = got[(ZOOM, x, y)]
        r, c = (y - y0) * 256, (x - x0) * 256
        assert np.array_equal(image.pixels, up[r : r + 256, c : c + 256])
        assert image.tile == (x, y, ZOOM) and image.resolution_m_per_px == pytest.approx(
            got[(ZOOM, x0, y0)].resolution_m_per_px, rel=1e-3
        )
