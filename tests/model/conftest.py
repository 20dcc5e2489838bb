"""Fixtures of the model tests: small labelled folders of real Texty crops (or synthetic chips)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TEXTY_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "texty-amber"


def _synthetic_chip(rng: np.random.Generator, mining: bool, h: int, w: int) -> np.ndarray:
    """Green noise; 'mining' chips carry bright round sandy pits."""
    img = np.zeros((h, w, 3), np.float32) + np.array([70, 100, 60], np.float32)
    img += rng.normal(0, 12, size=(h, w, 3))
    if mining:
        yy, xx = np.mgrid[:h, :w]
        for _ in range(12):
            cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(4, 12)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = (200, 190, 150)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def small_folder(tmp_path_factory) -> Path:
    """A labelled folder (positive/, negative/) of 8 + 8 chips: real Texty crops when available."""
    root = tmp_path_factory.mktemp("labelled")
    for sub in ("positive", "negative"):
        (root / sub).mkdir()
        if TEXTY_DIR.is_dir():
            for src in sorted((TEXTY_DIR / sub).glob("*.png"))[::23][:8]:
                shutil.copy(src, root / sub / src.name)
        else:
            rng = np.random.default_rng(1 if sub == "positive" else 2)
            for i in range(8):
                chip = _synthetic_chip(rng, sub == "positive", 150 + 7 * i, 170)
                Image.fromarray(chip).save(root / sub / f"51.{i}0_26.{i}0_09_Mar_2015_GMT_super_{i}.png")
    return root
