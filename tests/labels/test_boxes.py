"""Boxes drawn on whole images: CSV parsing, cutting, import into the store, the CLI, the real Texty tiles."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from amberwatch.cli import main
from amberwatch.errors import InvalidInputError, NotFoundError, SkippedFileWarning
from amberwatch.imagery.decode import encode_png
from amberwatch.labels.boxes import cut_boxes, import_boxes, read_boxes
from amberwatch.labels.store import ExampleStore
from amberwatch.model.dataset import load_boxes

from .conftest import make_pixels

REPO = Path(__file__).resolve().parents[2]
HEADER = "image,x0_px,y0_px,x1_px,y1_px,label,category\n"


@pytest.fixture
def whole_images(tmp_path: Path) -> Path:
    """A folder with two whole 100x80 images and a corrupt one."""
    root = tmp_path / "images"
    (root / "tiles").mkdir(parents=True)
    (root / "tiles" / "a.png").write_bytes(encode_png(make_pixels(1, 80, 100)))
    (root / "tiles" / "b.png").write_bytes(encode_png(make_pixels(2, 80, 100)))
    (root / "tiles" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    return root


def _csv(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "boxes.csv"
    path.write_text(HEADER + body)
    return path


def test_read_and_cut_boxes(tmp_path: Path, whole_images: Path) -> None:
    path = _csv(tmp_path, "tiles/a.png,10,20,42,52,mining,\ntiles/b.png,0,0,100,80,not_mining,field\n")
    boxes = read_boxes(path)
    assert [(b.label, b.category, b.line) for b in boxes] == [("mining", None, 2), ("not_mining", "field", 3)]
    assert boxes[0].name == "a_x10_y20_32x32.png" and boxes[0].source_image == "box:a.png"
    crops = list(cut_boxes(boxes, whole_images))
    assert np.array_equal(crops[0][1], make_pixels(1, 80, 100)[20:52, 10:42])
    assert crops[1][1].shape == (80, 100, 3)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("tiles/a.png,10,20,x,52,mining,\n", "line 2: pixel coordinates must be integers"),
        ("tiles/a.png,10,20,12,52,mining,\n", "sides >= 16 px"),
        ("tiles/a.png,10,20,42,52,pits,\n", "line 2"),
        ("tiles/a.png,10,20,42,52,not_mining,volcano\n", "volcano"),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        read_boxes(_csv(tmp_path, body))


def test_missing_columns_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("image,x0_px,label\n")
    with pytest.raises(InvalidInputError, match=r"missing column.*y0_px"):
        read_boxes(bad)
    with pytest.raises(NotFoundError, match=r"nope.csv"):
        read_boxes(tmp_path / "nope.csv")


def test_import_boxes_skips_bad_boxes_and_is_idempotent(tmp_path: Path, whole_images: Path) -> None:
    path = _csv(
        tmp_path,
        "tiles/a.png,10,20,42,52,mining,\n"
        "tiles/a.png,80,20,112,52,mining,\n"  # leaves the 100 px wide image
        "tiles/broken.png,0,0,32,32,not_mining,\n"
        "tiles/gone.png,0,0,32,32,not_mining,\n"
        "tiles/b.png,0,0,32,32,not_mining,field\n",
    )
    with ExampleStore.open(tmp_path / "p.db") as store:
        report = import_boxes(store, path, whole_images)
        assert (report.added, report.present) == (2, 0)
        reasons = dict(report.skipped)
        assert "lies outside 'tiles/a.png' (100x80 px)" in reasons["tiles/a.png line 3"]
        assert "broken.png" in reasons["tiles/broken.png line 4"]
        assert "gone.png" in reasons["tiles/gone.png line 5"]
        again = import_boxes(store, path, whole_images)
        assert (again.added, again.present) == (0, 2)
        examples = store.examples()
        assert {e.block_key for e in examples} == {"Ibox:a.png", "Ibox:b.png"}
        assert {e.category for e in examples} == {None, "field"}


def test_load_boxes_groups_by_whole_image(tmp_path: Path, whole_images: Path) -> None:
    path = _csv(
        tmp_path,
        "tiles/a.png,0,0,32,32,mining,\ntiles/a.png,40,0,72,32,not_mining,\ntiles/broken.png,0,0,32,32,not_mining,\n",
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_boxes(path, whole_images)
    assert list(data.labels) == [1, 0] and data.groups == ["Ibox:a.png", "Ibox:a.png"]
    assert any(issubclass(w.category, SkippedFileWarning) and "broken.png" in str(w.message) for w in caught)


def test_cli_import_boxes(tmp_path: Path, whole_images: Path) -> None:
    path = _csv(tmp_path, "tiles/a.png,10,20,42,52,mining,\ntiles/a.png,80,20,112,52,mining,\n")
    db = str(tmp_path / "p.db")
    result = CliRunner().invoke(
        main, ["examples", "import-boxes", str(path), "--images", str(whole_images), "--db", db]
    )
    assert result.exit_code == 0, result.output
    assert "added 1, already present 0, skipped 1" in result.output
    assert "lies outside" in result.output
    missing = CliRunner().invoke(main, ["examples", "import-boxes", str(tmp_path / "x.csv"), "--images", "."])
    assert missing.exit_code == 1 and "x.csv" in missing.output and "Traceback" not in missing.output


def test_texty_tile_boxes_cut_cleanly(texty_dir: Path) -> None:
    """The repository's hand-drawn boxes on the Texty tiles all lie inside their images."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkippedFileWarning)
        data = load_boxes(REPO / "scripts" / "data" / "texty_tile_boxes.csv", texty_dir)
    counts = data.counts()
    assert counts["mining"] >= 6 and counts["not_mining"] >= 30 and counts["groups"] == 4
