"""Fixtures of the labels tests: real SQLite files and small real image folders in tmp dirs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from amberwatch.imagery.decode import encode_png
from amberwatch.labels.store import ExampleStore

TEXTY_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "texty-amber"


def make_pixels(seed: int, height: int = 24, width: int = 32) -> np.ndarray:
    """A small deterministic RGB image, different for every seed."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


@pytest.fixture
def store(tmp_path: Path):
    """An ExampleStore on a fresh project DB file."""
    s = ExampleStore.open(tmp_path / "project.db")
    yield s
    s.close()


@pytest.fixture
def texty_dir() -> Path:
    """The shared real Texty data set (tests using it skip when absent)."""
    if not (TEXTY_DIR / "positive").is_dir():
        pytest.skip(f"real data folder {TEXTY_DIR} is absent")
    return TEXTY_DIR


@pytest.fixture
def small_folder(tmp_path: Path, texty_dir: Path) -> Path:
    """A folder with 5 real positives, 5 real negatives, generated PNGs with plain names and a category."""
    root = tmp_path / "examples"
    for sub, label_dir in (("positive", "positive"), ("negative", "negative")):
        (root / sub).mkdir(parents=True)
        for f in sorted((texty_dir / label_dir).glob("*.png"))[:5]:
            shutil.copy(f, root / sub / f.name)
    (root / "positive" / "plain_pit.png").write_bytes(encode_png(make_pixels(1)))
    (root / "negative" / "quarry").mkdir()
    (root / "negative" / "quarry" / "sand quarry.png").write_bytes(encode_png(make_pixels(2)))
    return root
