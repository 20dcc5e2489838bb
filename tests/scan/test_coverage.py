"""An AOI against a local source's bounds: wholly outside is an error naming both bboxes, partly outside warns."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from amberwatch.cli import main
from amberwatch.errors import AOIError, OutsideImageryWarning
from amberwatch.imagery.aoi import aoi_from_bbox
from amberwatch.imagery.types import LngLatBbox
from amberwatch.scan.engine import check_coverage
from tests.scan.test_geotiff_resolution import write_utm_geotiff

BOUNDS = LngLatBbox(26.90, 51.30, 26.91, 51.31)


def test_aoi_inside_the_bounds_passes_silently():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_coverage(aoi_from_bbox("26.902,51.302,26.905,51.305"), BOUNDS, "ortho.tif")
        check_coverage(aoi_from_bbox("0,0,1,1"), None, "https://tiles/{z}/{x}/{y}.png")  # bounds unknown


def test_aoi_partly_outside_warns_with_its_share():
    with pytest.warns(OutsideImageryWarning, match=r"50% of AOI .* lies outside imagery 'ortho.tif'"):
        check_coverage(aoi_from_bbox("26.905,51.302,26.915,51.305"), BOUNDS, "ortho.tif")


def test_aoi_wholly_outside_is_an_error_naming_both_bboxes():
    with pytest.raises(AOIError, match=r"W,S,E,N 30,51.3,30.01,51.31.*wholly outside.*W,S,E,N 26.9,51.3,26.91,51.31"):
        check_coverage(aoi_from_bbox("30.0,51.30,30.01,51.31"), BOUNDS, "ortho.tif")


def test_scan_with_latitude_and_longitude_swapped_exits_1_before_scanning(tmp_path):
    tif = tmp_path / "ortho.tif"
    west, south, east, north = write_utm_geotiff(tif, np.full((300, 300, 3), 120, np.uint8), 0.38)
    swapped = f"{south},{west},{north},{east}"
    db = tmp_path / "p.db"
    result = CliRunner().invoke(
        main, ["scan", "--bbox", swapped, "--imagery", str(tif), "--zoom", "18", "--db", str(db), "--no-progress"]
    )
    assert result.exit_code == 1, result.output
    (line,) = [x for x in result.stderr.splitlines() if x.strip()]
    assert line.startswith("Error: AOI 'bbox ") and "wholly outside imagery" in line and "ortho.tif" in line
    assert "latitude and longitude swapped" in line
    assert "Scan 1" not in result.output
