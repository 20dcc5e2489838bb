"""The imagery CLI: from-image round trips (synthetic and a real Texty image), info, presets, bad input."""

from __future__ import annotations

from pathlib import Path

import mercantile
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from amberwatch.cli import main
from amberwatch.imagery.open import open_source
from amberwatch.imagery.tiles import lnglat_to_tile

TEXTY = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "texty-amber"
LAT, LON = 51.3012, 26.6043


def _pixel_of(lon: float, lat: float, z: int) -> tuple[tuple[int, int, int], int, int]:
    t = lnglat_to_tile(lon, lat, z)
    b = mercantile.xy_bounds(t[1], t[2], z)
    mx, my = mercantile.xy(lon, lat)
    return t, int((b.top - my) / (b.top - b.bottom) * 256), int((mx - b.left) / (b.right - b.left) * 256)


@pytest.fixture
def marked_image(tmp_path: Path) -> Path:
    """A 1000x975 noisy RGB image with a pure green 9x9 block at its centre."""
    rng = np.random.default_rng(1)
    arr = rng.integers(60, 180, (975, 1000, 3), dtype=np.uint8)
    arr[487 - 4 : 487 + 5, 500 - 4 : 500 + 5] = (0, 255, 0)
    p = tmp_path / "shot.png"
    Image.fromarray(arr).save(p)
    return p


def test_from_image_round_trip_centre_pixel(marked_image: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = CliRunner().invoke(
        main,
        [
            "imagery",
            "from-image",
            str(marked_image),
            "--center",
            f"{LAT},{LON}",
            "--resolution",
            "0.38",
            "--out",
            str(out),
            "--date",
            "2015-03-10",
        ],
    )
    assert res.exit_code == 0, res.output
    spec = res.stdout.strip().splitlines()[-1]
    assert spec == str(out / "tiles") and (out / "shot.tif").is_file()
    for s in (spec, str(out / "shot.tif")):
        with open_source(s) as src:
            assert src.max_zoom == 18
            tile, row, col = _pixel_of(LON, LAT, 18)
            img = src.read_tile(*tile)
            assert img is not None and str(img.capture_date) == "2015-03-10"
            assert tuple(img.pixels[row, col]) == (0, 255, 0), s
            assert src.bounds.west_deg < LON < src.bounds.east_deg
    # Re-running into the same folder replaces its tiles instead of mixing them.
    res = CliRunner().invoke(
        main,
        ["imagery", "from-image", str(marked_image), "--center", "10,10", "--resolution", "0.38", "--out", str(out)],
    )
    assert res.exit_code == 0, res.output
    with open_source(str(out / "tiles")) as src:
        assert src.bounds.south_deg < 10 < src.bounds.north_deg


def test_from_image_zoom_and_geotiff_only(marked_image: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(
        main,
        [
            "imagery",
            "from-image",
            str(marked_image),
            "--center",
            f"{LAT},{LON}",
            "--resolution",
            "0.38",
            "--out",
            str(tmp_path / "o"),
            "--zoom",
            "17",
            "--format",
            "geotiff",
        ],
    )
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == str(tmp_path / "o" / "shot.tif") and not (tmp_path / "o" / "tiles").exists()
    res = CliRunner().invoke(
        main,
        [
            "imagery",
            "from-image",
            str(marked_image),
            "--center",
            f"{LAT},{LON}",
            "--resolution",
            "0.38",
            "--out",
            str(tmp_path / "p"),
            "--zoom",
            "17",
            "--format",
            "tiles",
        ],
    )
    assert res.exit_code == 0 and (tmp_path / "p" / "tiles" / "17").is_dir()


@pytest.mark.parametrize(
    ("center", "resolution", "needle"),
    [
        ("51.3", "0.38", "LAT,LON"),
        ("151.3,26.5", "0.38", "latitude"),
        ("51.3,270", "0.38", "longitude"),
        ("a,b", "0.38", "LAT,LON"),
        ("51.3,26.5", "0", "resolution"),
        ("51.3,26.5", "-1", "resolution"),
        ("51.3,26.5", "nan", "resolution"),
    ],
)
def test_from_image_bad_centre_or_resolution_exits_2(
    marked_image: Path, tmp_path: Path, center: str, resolution: str, needle: str
) -> None:
    res = CliRunner().invoke(
        main,
        [
            "imagery",
            "from-image",
            str(marked_image),
            "--center",
            center,
            "--resolution",
            resolution,
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert res.exit_code == 2 and needle in res.output


def test_from_image_real_texty_tile(tmp_path: Path) -> None:
    img_path = TEXTY / "tiles" / "positive1.png"
    if not img_path.is_file():
        pytest.skip("texty-amber data not present")
    arr = np.asarray(Image.open(img_path).convert("RGB"))
    res = CliRunner().invoke(
        main,
        [
            "imagery",
            "from-image",
            str(img_path),
            "--center",
            f"{LAT},{LON}",
            "--resolution",
            "0.38",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert res.exit_code == 0, res.output
    with open_source(str(tmp_path / "o" / "tiles")) as src:
        tile, row, col = _pixel_of(LON, LAT, 18)
        got = src.read_tile(*tile).pixels[row - 1 : row + 2, col - 1 : col + 2].reshape(-1, 3).mean(0)
    h, w = arr.shape[:2]
    want = arr[h // 2 - 2 : h // 2 + 3, w // 2 - 2 : w // 2 + 3].reshape(-1, 3).mean(0)
    assert np.abs(got - want).max() < 25


def test_info_and_presets(tmp_path: Path, marked_image: Path) -> None:
    r = CliRunner()
    res = r.invoke(main, ["imagery", "info", "Esri.WorldImagery"])
    assert res.exit_code == 0 and "type:" in res.output and "xyz" in res.output and "0..19" in res.output
    r.invoke(
        main,
        [
            "imagery",
            "from-image",
            str(marked_image),
            "--center",
            f"{LAT},{LON}",
            "--resolution",
            "0.38",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    res = r.invoke(main, ["imagery", "info", str(tmp_path / "o" / "shot.tif")])
    assert res.exit_code == 0 and "geotiff" in res.output and "0.380 m/px" in res.output and "bounds:" in res.output
    res = r.invoke(main, ["imagery", "presets", "--search", "esri.world"])
    assert res.exit_code == 0 and "Esri.WorldImagery" in res.output and "OpenStreetMap" not in res.output
    res = r.invoke(main, ["imagery", "info", "Not.A.Preset"])
    assert res.exit_code == 1 and "Not.A.Preset" in res.output
