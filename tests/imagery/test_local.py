"""Local sources: GeoTIFF in any CRS (UTM here), tile folders with dates, MBTiles with TMS rows."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import mercantile
import numpy as np
import pytest
import rasterio
from pyproj import Transformer

from amberwatch.errors import CRSError, InvalidInputError
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.open import open_source
from amberwatch.imagery.tiles import lnglat_to_tile
from tests.fixtures.geotiff import write_geotiff

from .conftest import tile_png

# A 0.5 m/px UTM 35N (EPSG:32635) raster near Rokytne, ~51.3N 27.2E, with a red 8x8 m marker.
UTM_ORIGIN = (334000.0, 5687000.0)  # left, top in metres
RES_M = 0.5
SIZE_PX = 600
MARKER_PX = (300, 200)  # (row, col) of the marker's top-left


def write_utm_geotiff(path: Path, **tags: str) -> Path:
    """A noisy RGB GeoTIFF in EPSG:32635 with a pure red marker square."""
    rng = np.random.default_rng(0)
    data = rng.integers(40, 160, (3, SIZE_PX, SIZE_PX), dtype=np.uint8)
    r, c = MARKER_PX
    data[:, r : r + 16, c : c + 16] = np.array([255, 0, 0], dtype=np.uint8)[:, None, None]
    return write_geotiff(path, data, UTM_ORIGIN, RES_M, tags=tags)


def marker_lnglat() -> tuple[float, float]:
    r, c = MARKER_PX
    e = UTM_ORIGIN[0] + (c + 8) * RES_M
    n = UTM_ORIGIN[1] - (r + 8) * RES_M
    return Transformer.from_crs("EPSG:32635", "EPSG:4326", always_xy=True).transform(e, n)


def pixel_in_tile(lon: float, lat: float, z: int) -> tuple[tuple[int, int, int], int, int]:
    t = lnglat_to_tile(lon, lat, z)
    b = mercantile.xy_bounds(t[1], t[2], z)
    mx, my = mercantile.xy(lon, lat)
    col = int((mx - b.left) / (b.right - b.left) * 256)
    row = int((b.top - my) / (b.top - b.bottom) * 256)
    return t, row, col


def test_utm_geotiff_marker_lands_in_the_right_web_mercator_pixel(tmp_path: Path, cache: TileCache) -> None:
    tif = write_utm_geotiff(tmp_path / "utm.tif", TIFFTAG_DATETIME="2018:05:17 10:00:00")
    lon, lat = marker_lnglat()
    with open_source(str(tif), cache=cache) as src:
        assert src.kind == "geotiff" and src.max_zoom == 18
        assert src.native_resolution_m_per_px == pytest.approx(0.5, rel=0.05)
        assert src.bounds.west_deg < lon < src.bounds.east_deg
        for z in (17, 18, 19):
            tile, row, col = pixel_in_tile(lon, lat, z)
            img = src.read_tile(*tile)
            assert img is not None and img.pixels.shape == (256, 256, 3)
            assert tuple(img.pixels[row, col]) == (255, 0, 0), (z, row, col)
            assert str(img.capture_date) == "2018-05-17"
        # Far away from the raster: no imagery, recorded empty.
        assert src.read_tile(18, 0, 0) is None
        assert cache.get(src.source_id, 18, 0, 0).status == "empty"
        source_id = src.source_id
    # Re-opening the unchanged file reuses the cache (same id).
    with open_source(str(tif), cache=cache, capture_date="2019-01-02") as again:
        assert again.source_id == source_id
        tile, _, _ = pixel_in_tile(lon, lat, 18)
        assert str(again.read_tile(*tile).capture_date) == "2019-01-02"  # the option wins


def test_geotiff_edge_tile_is_partial_and_outside_is_black(tmp_path: Path) -> None:
    tif = write_utm_geotiff(tmp_path / "utm.tif")
    with open_source(str(tif)) as src:
        # The tile holding the raster's north-west corner is part data, part outside.
        nw = Transformer.from_crs("EPSG:32635", "EPSG:4326", always_xy=True).transform(*UTM_ORIGIN)
        tile, row, col = pixel_in_tile(*nw, 18)
        img = src.read_tile(*tile)
        assert img is not None and img.capture_date is None
        # UTM grid north is ~1.9 deg off Web Mercator north here, so edges are slightly rotated.
        assert (img.pixels[:, : max(col - 2, 0)] == 0).all() and (img.pixels[: max(row - 6, 0)] == 0).all()
        assert img.pixels[min(row + 5, 255), min(col + 5, 255)].sum() > 0


def test_geotiff_without_crs_is_a_crs_error(tmp_path: Path) -> None:
    p = tmp_path / "plain.tif"
    with rasterio.open(p, "w", driver="GTiff", width=8, height=8, count=3, dtype="uint8") as ds:
        ds.write(np.full((3, 8, 8), 9, dtype=np.uint8))
    with pytest.raises(CRSError, match=r"plain.tif"):
        open_source(str(p))


def test_tile_folder_with_dates_sidecar(tmp_path: Path, cache: TileCache) -> None:
    root = tmp_path / "tiles"
    (root / "18" / "150000").mkdir(parents=True)
    (root / "18" / "150000" / "86000.png").write_bytes(tile_png(11))
    (root / "18" / "150000" / "86001.jpg").write_bytes(tile_png(12, fmt="JPEG"))
    (root / "dates.json").write_text(json.dumps({"default": "2018-06-01", "18/150000/86001": "2017-09-09"}))
    with open_source(str(root), cache=cache) as src:
        assert src.kind == "folder" and (src.min_zoom, src.max_zoom) == (18, 18)
        a, b = src.read_tile(18, 150000, 86000), src.read_tile(18, 150000, 86001)
        assert tuple(a.pixels[0, 0]) == (11, 7, 9) and str(a.capture_date) == "2018-06-01"
        assert b is not None and str(b.capture_date) == "2017-09-09"
        assert src.read_tile(18, 150001, 86000) is None
        assert cache.get(src.source_id, 18, 150000, 86001).content_type == "image/jpeg"
        assert src.bounds.north_deg > src.bounds.south_deg


def _write_mbtiles(path: Path, tiles: dict[tuple[int, int, int], bytes]) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE metadata (name TEXT, value TEXT);"
        "CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB);"
    )
    conn.executemany(
        "INSERT INTO metadata VALUES (?, ?)",
        [
            ("name", "t"),
            ("format", "png"),
            ("minzoom", "3"),
            ("maxzoom", "3"),
            ("bounds", "-180,-85,180,85"),
            ("capture_date", "2020-07-07"),
        ],
    )
    for (z, x, y), data in tiles.items():  # stored with TMS rows, as the spec says
        conn.execute("INSERT INTO tiles VALUES (?, ?, ?, ?)", (z, x, (1 << z) - 1 - y, data))
    conn.commit()
    conn.close()


def test_mbtiles_rows_are_flipped_from_tms(tmp_path: Path, cache: TileCache) -> None:
    p = tmp_path / "area.mbtiles"
    _write_mbtiles(p, {(3, 2, 1): tile_png(21), (3, 2, 6): tile_png(26)})
    with open_source(str(p), cache=cache) as src:
        assert src.kind == "mbtiles" and (src.min_zoom, src.max_zoom) == (3, 3)
        assert tuple(src.read_tile(3, 2, 1).pixels[0, 0]) == (21, 7, 9)
        assert tuple(src.read_tile(3, 2, 6).pixels[0, 0]) == (26, 7, 9)
        assert str(src.read_tile(3, 2, 1).capture_date) == "2020-07-07"
        assert src.read_tile(3, 2, 2) is None


@pytest.mark.parametrize(
    ("key", "value"), [("minzoom", "abc"), ("maxzoom", "1e3"), ("minzoom", "-1"), ("maxzoom", "99")]
)
def test_mbtiles_bad_zoom_metadata_is_named(tmp_path: Path, key: str, value: str) -> None:
    p = tmp_path / "area.mbtiles"
    _write_mbtiles(p, {(3, 2, 1): tile_png(21)})
    with sqlite3.connect(p) as conn:
        conn.execute("UPDATE metadata SET value = ? WHERE name = ?", (value, key))
    conn.close()
    with pytest.raises(InvalidInputError, match=rf"area.mbtiles' has {key} '{value}': not a zoom from 0 to 30"):
        open_source(str(p))


def test_tile_cache_file_is_not_an_imagery_source(tmp_path: Path) -> None:
    TileCache(tmp_path / "x-tiles.mbtiles").close()
    with pytest.raises(InvalidInputError, match="not an MBTiles file"):
        open_source(str(tmp_path / "x-tiles.mbtiles"))


def test_missing_files_are_named(tmp_path: Path) -> None:
    for name in ("nope.tif", "nope.mbtiles", "nope/dir/x"):
        with pytest.raises(InvalidInputError, match="nope"):
            open_source(str(tmp_path / name))


def test_geotiff_nodata_reads_as_none_and_16bit_gray_is_scaled(tmp_path: Path) -> None:
    p = tmp_path / "gray16.tif"
    data = np.zeros((1, SIZE_PX, SIZE_PX), dtype=np.uint16)
    data[0, :, SIZE_PX // 2 :] = np.linspace(1000, 3000, SIZE_PX // 2, dtype=np.uint16)[None, :]  # west half nodata
    write_geotiff(p, data, UTM_ORIGIN, RES_M, nodata=0)
    to_lnglat = Transformer.from_crs("EPSG:32635", "EPSG:4326", always_xy=True).transform
    west_mid = to_lnglat(UTM_ORIGIN[0] + 40 * RES_M, UTM_ORIGIN[1] - 300 * RES_M)
    east_mid = to_lnglat(UTM_ORIGIN[0] + 520 * RES_M, UTM_ORIGIN[1] - 300 * RES_M)
    with open_source(str(p)) as src:
        assert src.read_tile(*lnglat_to_tile(*west_mid, 20)) is None  # all nodata
        img = src.read_tile(*lnglat_to_tile(*east_mid, 20))
        assert img is not None
        px = img.pixels.reshape(-1, 3)
        assert (px[:, 0] == px[:, 1]).all() and (px[:, 1] == px[:, 2]).all()  # gray stays gray
        assert 0 < int(px[:, 0].max()) <= 255 and px[:, 0].std() > 1
