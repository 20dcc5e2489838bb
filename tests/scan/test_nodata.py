"""Ground without imagery (a GeoTIFF's nodata margin, transparent from-image tiles) is neither scanned nor sampled."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from pyproj import Transformer

from amberwatch.db import connect
from amberwatch.imagery.aoi import aoi_from_bbox
from amberwatch.imagery.georef import georeference_image
from amberwatch.results.area_review import estimate_for_scan, import_reference_csv, review_progress
from amberwatch.results.map_units import NO_IMAGERY
from amberwatch.results.sampling import draw_sample, export_sample, sample_units
from amberwatch.results.store import scan_tiles_at
from amberwatch.scan.engine import ScanSettings, run_scan
from tests.fixtures.geotiff import UTM35N, left_top_centred_on, write_geotiff
from tests.scan.conftest import CENTER, TEXTY, ZOOM, texty_image

RES_M = 0.38


def write_margin_geotiff(path: Path, pixels: np.ndarray, margin_px: int) -> tuple[tuple[float, ...], float]:
    """An RGB UTM GeoTIFF (nodata=0) whose west ``margin_px`` columns are nodata -> (lon/lat bounds, valid km²)."""
    pixels = np.maximum(pixels, 1)  # imagery never equals the nodata value
    pixels[:, :margin_px] = 0
    h, w = pixels.shape[:2]
    left, top = left_top_centred_on(CENTER, w, h, RES_M)
    write_geotiff(path, np.moveaxis(pixels, 2, 0), (left, top), RES_M, nodata=0)
    to_ll = Transformer.from_crs(UTM35N, "EPSG:4326", always_xy=True)
    west, south = to_ll.transform(left, top - h * RES_M)
    east, north = to_ll.transform(left + w * RES_M, top)
    return (west, south, east, north), (w - margin_px) * h * RES_M**2 / 1e6


@pytest.fixture(scope="module")
def margin_scan(tmp_path_factory) -> tuple[Path, int, float, float]:
    """A finished scan of a GeoTIFF with a nodata margin over its whole footprint: (db, scan id, km², valid km²)."""
    tmp = tmp_path_factory.mktemp("nodata")
    pixels = texty_image("positive1")
    bounds, valid_km2 = write_margin_geotiff(tmp / "margin.tif", pixels, pixels.shape[1] // 3)
    aoi = aoi_from_bbox(",".join(f"{v:.9f}" for v in bounds))
    out = run_scan(aoi, str(tmp / "margin.tif"), ZOOM, tmp / "margin.db", ScanSettings(workers=1, progress=False))
    assert out.tiles_done >= 9 and out.tiles_failed == 0
    return tmp / "margin.db", out.scan_id, out.area_scanned_km2, valid_km2


def test_scanned_km2_counts_only_ground_with_imagery(margin_scan):
    db, scan_id, km2, valid_km2 = margin_scan
    assert km2 == pytest.approx(valid_km2, rel=0.03)  # the footprint's tiles cover ~0.22 km²
    conn = connect(db)
    stored = conn.execute("SELECT area_scanned_km2 FROM scans WHERE id = ?", (scan_id,)).fetchone()[0]
    assert stored == pytest.approx(km2, rel=1e-9)


def test_cells_without_imagery_have_no_probability(margin_scan):
    db, scan_id, *_ = margin_scan
    tiles = [t for t in scan_tiles_at(connect(db), scan_id, ZOOM) if t.status == "done"]
    masked = [t for t in tiles if t.valid_cells is not None]
    assert masked and any(0 < sum(t.valid_cells) < len(t.valid_cells) for t in masked)  # partial edge tiles
    for t in masked:
        valid = np.frombuffer(t.valid_cells, dtype=np.uint8) > 0
        grid = np.frombuffer(t.grid, dtype=np.uint8)
        assert (grid[~valid] == 0).all()


def test_area_frame_excludes_the_margin_and_no_unit_lands_on_it(margin_scan):
    db, scan_id, km2, _ = margin_scan
    conn = connect(db)
    whole = draw_sample(conn, scan_id, 5, allocation="proportional", seed=1)
    assert whole.total_area_ha == pytest.approx(km2 * 100, rel=0.01)
    sample = draw_sample(conn, scan_id, whole.total_cells, allocation="proportional", seed=2)  # every cell
    valid = _valid_cells(conn, scan_id)
    units = sample_units(conn, sample.sample_id)
    assert len(units) == sum(valid.values())
    assert all(valid[(u["z"], u["x"], u["y"], u["cell_row"], u["cell_col"])] for u in units)


def test_no_imagery_answer_from_csv_replaces_the_unit(margin_scan, tmp_path):
    db, scan_id, *_ = margin_scan
    conn = connect(db)
    sample = draw_sample(conn, scan_id, 12, allocation="equal", seed=5)
    units = sample_units(conn, sample.sample_id)
    gone = units[0]
    rows = [f"{gone['unit_id']},no imagery"] + [
        f"{u['unit_id']},{'mining' if i % 3 == 0 else 'not_mining'}" for i, u in enumerate(units[1:])
    ]
    csv = tmp_path / "ref.csv"
    csv.write_text("unit_id,reference_class\n" + "\n".join(rows) + "\n")
    r = import_reference_csv(conn, sample.sample_id, csv)
    assert r == {"recorded": 12, "skipped_blank": 0, "no_imagery": 1, "replaced": 1}
    assert import_reference_csv(conn, sample.sample_id, csv)["replaced"] == 0  # a re-import draws nothing more
    after = sample_units(conn, sample.sample_id)
    new = [u for u in after if u["unit_id"] not in {v["unit_id"] for v in units}]
    assert len(new) == 1 and new[0]["stratum"] == gone["stratum"] and new[0]["reference_class"] is None
    cells = [(u["z"], u["x"], u["y"], u["cell_row"], u["cell_col"]) for u in after]
    assert len(set(cells)) == len(cells) and _valid_cells(conn, scan_id)[cells[-1]]
    assert "no_imagery" not in export_sample(conn, sample.sample_id, "csv").splitlines()[0]
    assert review_progress(conn, sample.sample_id) == {"units": 13, "reviewed": 12}
    estimate, info = estimate_for_scan(conn, scan_id, sample.sample_id)
    assert info["no_imagery"] == 1 and estimate.n_units == 11
    assert estimate.total_area_ha < sample.total_area_ha  # the share found without imagery is left out
    assert any("had no imagery" in note for note in estimate.notes)
    assert NO_IMAGERY in {u["reference_class"] for u in after}


def test_from_image_tiles_count_only_the_image(tmp_path):
    image = TEXTY / "tiles" / "positive1.png"
    if not image.exists():
        pytest.skip(f"Texty data not found at {image}")
    lon, lat = CENTER
    out = georeference_image(
        image, center_lat_deg=lat, center_lon_deg=lon, resolution_m_per_px=RES_M, out_dir=tmp_path, zoom=ZOOM
    )
    b = out.bounds
    aoi = aoi_from_bbox(f"{b.west_deg},{b.south_deg},{b.east_deg},{b.north_deg}")
    scan = run_scan(aoi, out.spec, ZOOM, tmp_path / "img.db", ScanSettings(workers=1, progress=False))
    h, w = texty_image("positive1").shape[:2]
    assert scan.area_scanned_km2 == pytest.approx(w * h * RES_M**2 / 1e6, rel=0.03)  # not the ~0.23 km² of tiles


def _valid_cells(conn: sqlite3.Connection, scan_id: int) -> dict[tuple[int, ...], bool]:
    """(z, x, y, row, col) -> has imagery, for every cell of the scan's done tiles."""
    out = {}
    for t in scan_tiles_at(conn, scan_id, ZOOM):
        if t.status != "done":
            continue
        g = t.grid_cells
        valid = np.ones(g * g, bool) if t.valid_cells is None else np.frombuffer(t.valid_cells, np.uint8) > 0
        for i, ok in enumerate(valid):
            out[(t.z, t.x, t.y, *divmod(i, g))] = bool(ok)
    return out
