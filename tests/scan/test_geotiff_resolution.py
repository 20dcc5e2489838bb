"""GeoTIFF imagery in a UTM CRS, resampling to the model's resolution, and refusing coarse imagery."""

from __future__ import annotations

import numpy as np
import pytest
from pyproj import Transformer

from amberwatch.errors import ResolutionError
from amberwatch.imagery.aoi import aoi_from_bbox
from amberwatch.scan.engine import ScanSettings, model_tile_px, run_scan
from tests.fixtures.geotiff import UTM35N, left_top_centred_on, write_geotiff
from tests.scan.conftest import CENTER, texty_image


def write_utm_geotiff(path, pixels: np.ndarray, resolution_m: float) -> tuple[float, float, float, float]:
    """Write pixels as an RGB GeoTIFF in UTM 35N centred on CENTER; returns its lon/lat bounds (inset)."""
    h, w = pixels.shape[:2]
    left, top = left_top_centred_on(CENTER, w, h, resolution_m)
    write_geotiff(path, np.moveaxis(pixels, 2, 0), (left, top), resolution_m)
    to_ll = Transformer.from_crs(UTM35N, "EPSG:4326", always_xy=True)
    west, south = to_ll.transform(left + 40, top - h * resolution_m + 40)
    east, north = to_ll.transform(left + w * resolution_m - 40, top - 40)
    return west, south, east, north


def test_utm_geotiff_is_scanned(tmp_path):
    tif = tmp_path / "positive1_utm.tif"
    west, south, east, north = write_utm_geotiff(tif, texty_image("positive1"), 0.38)
    aoi = aoi_from_bbox(f"{west},{south},{east},{north}")
    out = run_scan(aoi, str(tif), 18, tmp_path / "tif.db", ScanSettings(workers=1, progress=False))
    assert out.tiles_total >= 4
    assert out.tiles_failed == 0
    assert out.tiles_done >= 4
    assert out.area_scanned_km2 > 0.05


def test_coarse_geotiff_is_refused(tmp_path):
    tif = tmp_path / "coarse.tif"
    pixels = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    west, south, east, north = write_utm_geotiff(tif, pixels, 5.0)
    aoi = aoi_from_bbox(f"{west},{south},{east},{north}")
    with pytest.raises(ResolutionError, match=r"coarse.tif.*native resolution of [\d.]+ m/px, coarser than the 1.2"):
        run_scan(aoi, str(tif), 18, tmp_path / "coarse.db", ScanSettings(workers=1, progress=False))


def test_tiles_are_resampled_to_whole_cells_at_the_model_resolution():
    # z18 at 51°N (~0.37 m/px) is within a cell of the model's 0.38 m/px: no resampling.
    assert model_tile_px(0.373, 0.38, 32) == 256
    # z17 (~0.75 m/px) doubles, z19 (~0.19 m/px) halves; always whole cells.
    assert model_tile_px(0.746, 0.38, 32) == 512
    assert model_tile_px(0.187, 0.38, 32) == 128
    assert model_tile_px(0.02, 0.38, 32) == 32


@pytest.mark.parametrize(("zoom", "tile_px"), [(17, 512), (19, 128)])
def test_other_zooms_are_resampled_to_the_model_resolution(tmp_path, zoom, tile_px):
    import sqlite3

    from amberwatch.model import load
    from amberwatch.scan.engine import plan_scan

    clf = load()

    tif = tmp_path / "positive1_utm.tif"
    west, south, east, north = write_utm_geotiff(tif, texty_image("positive1"), 0.38)
    aoi = aoi_from_bbox(f"{west},{south},{east},{north}")
    db = tmp_path / f"z{zoom}.db"
    plan = plan_scan(aoi, zoom)
    cells = model_tile_px(plan.tile_resolution_m_per_px, clf.resolution_m_per_px, clf.cell_px) // clf.cell_px
    assert abs(cells * clf.cell_px - tile_px) <= clf.cell_px  # about 512 / 128 px, in whole cells
    out = run_scan(aoi, str(tif), zoom, db, ScanSettings(workers=1, progress=False))
    assert out.tiles_done >= 1 and out.tiles_failed == 0
    conn = sqlite3.connect(db)
    found = {r[0] for r in conn.execute("SELECT grid_cells FROM scan_tiles WHERE status = 'done'")}
    conn.close()
    # z17 (~0.75 m/px): a tile becomes 512 model pixels; z19 (~0.19 m/px): 128 px, and the model's context
    # margin then needs two rings of neighbour tiles.
    assert found == {cells}
