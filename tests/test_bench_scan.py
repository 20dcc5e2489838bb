"""bench/scan.py's region server: a consistent z17/z18 pyramid served from pre-encoded quads, pits on their share."""

from __future__ import annotations

import importlib.util
import io
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from amberwatch.imagery.aoi import aoi_from_bbox
from amberwatch.imagery.pyramid import halve_straight
from amberwatch.scan.tiling import iter_tiles

BENCH = Path(__file__).resolve().parents[1] / "bench" / "scan.py"
TEXTY_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "texty-amber"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_scan", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


bench = _bench()
needs_texty = pytest.mark.skipif(not (TEXTY_DATA / "tiles").is_dir(), reason="Texty data not at ../shared")


def _get(server, z: int, x: int, y: int) -> bytes:
    with urllib.request.urlopen(server.url.format(z=z, x=x, y=y), timeout=10) as r:
        return r.read()


def _image(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGBA")


@pytest.fixture(scope="module", params=["whole", "crops"])
def server(request):
    s = bench.RegionTileServer(TEXTY_DATA, 0.1, request.param, quads=(2, 4))
    yield s
    s.stop()


def _pit_z17(server) -> tuple[int, int]:
    """A z17 tile in a pit patch near the bench's centre."""
    t = bench.mercantile.tile(*bench.CENTER, 17)
    return next((x, y) for x in range(t.x, t.x + 200) for y in (t.y,) if server.is_pit(2 * x, 2 * y))


@needs_texty
def test_each_z17_tile_is_its_four_z18_tiles_halved_as_the_pyramid_halves(server):
    t = bench.mercantile.tile(*bench.CENTER, 17)
    before = dict(server.requests_by_zoom)
    for x, y in [(t.x, t.y), (t.x + 1, t.y + 3), _pit_z17(server)]:
        kids = {(dx, dy): _image(_get(server, 18, 2 * x + dx, 2 * y + dy)) for dx in (0, 1) for dy in (0, 1)}
        parent = np.asarray(_image(_get(server, 17, x, y)).convert("RGB"))
        assert np.array_equal(parent, np.asarray(halve_straight(kids).convert("RGB")))
    counted = {z: n - before.get(z, 0) for z, n in server.requests_by_zoom.items()}
    assert counted == {17: 3, 18: 12}


@needs_texty
def test_tiles_are_pre_encoded_bytes_of_the_pool_pits_in_pit_patches(server):
    x, y = _pit_z17(server)
    pits = {b for q in server.pits for b in [q.parent, *q.children.values()]}
    plain = {b for q in server.plain for b in [q.parent, *q.children.values()]}
    assert server.tile_bytes(17, x, y) in pits and server.tile_bytes(18, 2 * x + 1, 2 * y) in pits
    assert server.tile_bytes(17, x, y) is server.tile_bytes(17, x, y)
    assert server.tile_bytes(18, 2 * x + 1, 2 * y) not in plain
    far = next(x2 for x2 in range(x, x + 400) if not server.is_pit(2 * x2, 2 * y))
    assert server.tile_bytes(17, far, y) in plain


@needs_texty
def test_other_zooms_are_refused(server):
    with pytest.raises(urllib.error.HTTPError) as err:
        _get(server, 16, 100, 100)
    assert err.value.code == 404


@pytest.mark.parametrize("share", [0.02, 0.05])
def test_pit_patches_cover_the_asked_share_of_a_4096_tile_region(share):
    aoi = aoi_from_bbox(bench.square_bbox(4096))
    tiles = [(x, y) for _, x, y in iter_tiles(aoi.geometry, 18)]
    pits = [(x, y) for x, y in tiles if bench.region_is_pit(x, y, share)]
    assert abs(len(pits) / len(tiles) - share) < 0.25 * share + 0.001
    assert all(
        bench.region_is_pit(x // 4 * 4 + i, y // 4 * 4 + j, share) for x, y in pits for i in range(4) for j in (3,)
    )
