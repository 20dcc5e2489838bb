"""Fixtures of the imagery tests: the real tile server, a tile cache in tmp, and tile image builders."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from amberwatch.imagery.cache import TileCache


def tile_png(seed: int, size: int = 256, fmt: str = "PNG") -> bytes:
    """A non-uniform RGB tile whose colour encodes the seed (pixel (0,0) is (seed%256, 7, 9))."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    arr[:16, :16] = (seed % 256, 7, 9)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def uniform_png(rgba: tuple[int, ...], size: int = 256) -> bytes:
    """A single-colour tile (RGB or RGBA) - what blank tiles look like."""
    mode = "RGBA" if len(rgba) == 4 else "RGB"
    buf = io.BytesIO()
    Image.new(mode, (size, size), rgba).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[TileCache]:
    """A fresh TileCache file in tmp."""
    c = TileCache(tmp_path / "tiles.mbtiles")
    yield c
    c.close()


@pytest.fixture(autouse=True)
def _quiet_tile_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=Warning)
        yield
