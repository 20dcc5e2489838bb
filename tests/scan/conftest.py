"""Fixtures of the scan tests: the real tile server filled with tiles cut from the Texty whole images."""

from __future__ import annotations

import json
from pathlib import Path

import mercantile
import numpy as np
import pytest
from PIL import Image

from amberwatch.imagery.decode import encode_png

REPO = Path(__file__).resolve().parents[2]
TEXTY = REPO / ".." / "shared" / "data" / "texty-amber"
ZOOM = 18
CENTER = (26.90, 51.32)


def texty_image(name: str) -> np.ndarray:
    """One of the Texty whole images as HxWx3 uint8 (skips the test when the data is absent)."""
    path = TEXTY / "tiles" / f"{name}.png"
    if not path.exists():
        pytest.skip(f"Texty data not found at {path}")
    return np.asarray(Image.open(path).convert("RGB"))


def tile_origin(offset: tuple[int, int] = (0, 0)) -> tuple[int, int]:
    """(x, y) at ZOOM of a tile near Klesiv, shifted by offset tiles."""
    t = mercantile.tile(*CENTER, ZOOM)
    return t.x + offset[0], t.y + offset[1]


def put_image_tiles(server, image: np.ndarray, x0: int, y0: int, nx: int, ny: int) -> list[tuple[int, int, int]]:
    """Cut the top-left nx x ny tiles of an image onto the server at (x0, y0); returns the (z, x, y) keys."""
    keys = []
    for j in range(ny):
        for i in range(nx):
            tile = image[j * 256 : (j + 1) * 256, i * 256 : (i + 1) * 256]
            server.tiles[(ZOOM, x0 + i, y0 + j)] = encode_png(np.ascontiguousarray(tile))
            keys.append((ZOOM, x0 + i, y0 + j))
    return keys


def put_mosaic_tiles(server, x0: int, y0: int, nx: int, ny: int) -> list[tuple[int, int, int]]:
    """Fill nx x ny tiles with 3x3-tile blocks of the four Texty images in turn (real imagery everywhere)."""
    images = [texty_image(n)[:768, :768] for n in ("positive1", "negative1", "positive2", "negative2")]
    pngs: dict[tuple[int, int, int], bytes] = {}  # 36 distinct tiles, each encoded once
    keys = []
    for j in range(ny):
        for i in range(nx):
            k, r, c = ((i // 3) + (j // 3)) % len(images), (j % 3) * 256, (i % 3) * 256
            if (k, r, c) not in pngs:
                pngs[(k, r, c)] = encode_png(np.ascontiguousarray(images[k][r : r + 256, c : c + 256]))
            server.tiles[(ZOOM, x0 + i, y0 + j)] = pngs[(k, r, c)]
            keys.append((ZOOM, x0 + i, y0 + j))
    return keys


def tiles_bbox(x0: int, y0: int, nx: int, ny: int) -> tuple[float, float, float, float]:
    """(W, S, E, N) of a block of tiles, inset a hair so only those tiles overlap it."""
    west, _, _, north = mercantile.bounds(x0, y0, ZOOM)
    _, south, east, _ = mercantile.bounds(x0 + nx - 1, y0 + ny - 1, ZOOM)
    eps = 1e-7
    return (west + eps, south + eps, east - eps, north - eps)


def write_aoi(path: Path, bbox: tuple[float, float, float, float]) -> Path:
    """Write a GeoJSON FeatureCollection with the bbox as one Polygon."""
    w, s, e, n = bbox
    ring = [[w, s], [e, s], [e, n], [w, n], [w, s]]
    fc = {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}],
    }
    path.write_text(json.dumps(fc))
    return path


def bbox_arg(bbox: tuple[float, float, float, float]) -> str:
    """The --bbox option value."""
    return ",".join(f"{v:.9f}" for v in bbox)
