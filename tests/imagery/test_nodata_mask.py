"""GeoImage.valid: every reader marks the pixels without imagery (alpha, nodata, dataset masks, mosaic gaps)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pyproj import Transformer

from amberwatch.errors import InvalidInputError
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.decode import decode_with_valid
from amberwatch.imagery.mosaic import open_cached_source, render_bbox
from amberwatch.imagery.open import open_source
from amberwatch.imagery.tiles import lnglat_to_tile, tile_lnglat_bbox
from amberwatch.imagery.types import GeoImage, LngLatBbox
from tests.fixtures.geotiff import write_geotiff

from .conftest import tile_png

UTM_ORIGIN = (334000.0, 5687000.0)
RES_M = 0.5
SIZE_PX = 600


def write_nodata_margin_geotiff(path: Path) -> Path:
    """A noisy RGB GeoTIFF in EPSG:32635 (nodata=0) whose west half is nodata."""
    data = np.random.default_rng(0).integers(40, 160, (3, SIZE_PX, SIZE_PX), dtype=np.uint8)
    data[:, :, : SIZE_PX // 2] = 0
    return write_geotiff(path, data, UTM_ORIGIN, RES_M, nodata=0)


def _edge_tile() -> tuple[int, int, int]:
    """A z19 tile across the nodata edge (the raster's middle column), half a tile below the top."""
    e, n = UTM_ORIGIN[0] + SIZE_PX // 2 * RES_M, UTM_ORIGIN[1] - 150 * RES_M
    return lnglat_to_tile(*Transformer.from_crs("EPSG:32635", "EPSG:4326", always_xy=True).transform(e, n), 19)


def test_geotiff_nodata_margin_is_masked_live_and_from_the_cache(tmp_path: Path) -> None:
    tif = write_nodata_margin_geotiff(tmp_path / "margin.tif")
    z, x, y = _edge_tile()
    with TileCache(tmp_path / "tiles.mbtiles") as cache:
        with open_source(str(tif), cache=cache) as src:
            live = src.read_tile(z, x, y)
            source_id = src.source_id
        cached = open_cached_source(cache, source_id).read_tile(z, x, y)
    assert live is not None and live.valid is not None
    assert 0 < live.valid_fraction < 1
    assert (live.pixels[~live.valid] == 0).all() and live.pixels[live.valid].min() > 0
    assert not live.valid[:, 0].any() and live.valid[:, -1].all()  # nodata to the west
    assert cached is not None and (cached.valid == live.valid).all()


def test_geotiff_tile_inside_the_data_has_no_mask(tmp_path: Path) -> None:
    tif = write_nodata_margin_geotiff(tmp_path / "margin.tif")
    e, n = UTM_ORIGIN[0] + 500 * RES_M, UTM_ORIGIN[1] - 300 * RES_M
    lon, lat = Transformer.from_crs("EPSG:32635", "EPSG:4326", always_xy=True).transform(e, n)
    with open_source(str(tif)) as src:
        image = src.read_tile(*lnglat_to_tile(lon, lat, 21))  # a small tile well inside the data half
    assert image is not None and image.valid is None and image.valid_fraction == 1.0


def _png(mode: str, arr: np.ndarray, **info) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG", **info)
    return buf.getvalue()


def test_alpha_and_palette_transparency_give_the_mask() -> None:
    rgba = np.full((8, 8, 4), 200, dtype=np.uint8)
    rgba[:, :3, 3] = 0
    rgb, valid = decode_with_valid(_png("RGBA", rgba))
    assert valid is not None and not valid[:, :3].any() and valid[:, 3:].all()
    assert (rgb[:, :3] == 0).all()  # composited on black
    pal = np.zeros((8, 8), dtype=np.uint8)
    pal[4:] = 1
    img = Image.fromarray(pal, mode="P")
    img.putpalette([0, 0, 0, 90, 120, 60] + [0] * 762)
    buf = io.BytesIO()
    img.save(buf, format="PNG", transparency=0)
    _, valid = decode_with_valid(buf.getvalue())
    assert valid is not None and not valid[:4].any() and valid[4:].all()
    assert decode_with_valid(tile_png(1))[1] is None  # RGB: all imagery
    opaque = np.full((8, 8, 4), 255, dtype=np.uint8)
    assert decode_with_valid(_png("RGBA", opaque))[1] is None


def test_mosaic_gaps_are_outside_the_mask(tile_server, cache: TileCache) -> None:
    z, x, y = 18, 150000, 86000
    for dx in range(2):
        for dy in range(2):
            if (dx, dy) != (1, 1):
                tile_server.tiles[(z, x + dx, y + dy)] = tile_png(10 * dx + dy)
    a, b = tile_lnglat_bbox(z, x, y), tile_lnglat_bbox(z, x + 1, y + 1)
    bbox = LngLatBbox(a.west_deg, b.south_deg, b.east_deg, a.north_deg)
    with open_source(tile_server.url, cache=cache) as src:
        img = render_bbox(src, bbox, z)
        small = render_bbox(src, bbox, z, max_px=128)
    assert img.valid is not None and not img.valid[256:, 256:].any()
    assert img.valid[:256].all() and img.valid[:, :256].all()
    assert small.valid is not None and small.valid.shape == (128, 128) and small.valid_fraction == pytest.approx(0.75)


def test_geoimage_refuses_a_mask_of_another_shape() -> None:
    px = np.zeros((4, 4, 3), dtype=np.uint8)
    bbox = LngLatBbox(0, 0, 1, 1)
    with pytest.raises(InvalidInputError, match="valid mask must be 4x4 bool"):
        GeoImage(px, bbox, 1.0, "s", valid=np.ones((4, 5), dtype=bool))
