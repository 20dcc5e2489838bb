"""The one tile-pyramid builder: each tile below the base zoom is its four children mosaicked and halved, written
to a ``TileSink`` (a folder of ``{z}/{x}/{y}`` files for the story, the tile cache's overview table for the map, a
PMTiles archive for the static edition: ``publish.archive.PMTilesSink``).

A ``PyramidStyle`` says how four children become one tile (``downsample``) and how a tile is stored (``encode``).
``build_pyramid`` builds a bounded set of tiles eagerly, level by level, each level from the one below it in
memory; the map's overviews (``imagery.overview``) take the same style and the same sink interface one tile at a
time over the cache, so they never hold a whole level and skip tiles already current.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from PIL import Image

from amberwatch.imagery.types import TILE_SIZE_PX

TileXY = tuple[int, int]
JPEG_QUALITY = 85


class TileSink(Protocol):
    """Where a pyramid's encoded tiles go."""

    def put(self, z: int, x: int, y: int, data: bytes) -> None:
        """Store tile (z, x, y)."""

    def close(self) -> None:
        """Finish writing (flush, index, close files)."""


class FolderSink:
    """Tiles as files ``root/{z}/{x}/{y}.{ext}``, as a static web map reads them."""

    def __init__(self, root: Path, ext: str) -> None:
        self.root, self.ext = Path(root), ext

    def put(self, z: int, x: int, y: int, data: bytes) -> None:
        """Write the tile's file (its folders made as needed)."""
        path = self.root / f"{z}/{x}/{y}.{self.ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def close(self) -> None:
        """Nothing to finish: every file is complete when put returns."""


@dataclass(frozen=True)
class PyramidStyle:
    """How four children (RGBA, keyed by (dx, dy), absent ones transparent) become one tile, and how it is stored
    (``encode`` returns None for a tile not worth storing)."""

    downsample: Callable[[Mapping[TileXY, Image.Image]], Image.Image]
    encode: Callable[[Image.Image], bytes | None]


def _canvas(children: Mapping[TileXY, Image.Image]) -> Image.Image:
    """The 2 x 2 children on one transparent 512 px RGBA canvas."""
    canvas = Image.new("RGBA", (2 * TILE_SIZE_PX, 2 * TILE_SIZE_PX), (0, 0, 0, 0))
    for (dx, dy), img in children.items():
        canvas.paste(img, (dx * TILE_SIZE_PX, dy * TILE_SIZE_PX))
    return canvas


def halve_straight(children: Mapping[TileXY, Image.Image]) -> Image.Image:
    """The children's mosaic averaged 2 x 2 as stored (straight alpha): the map's overviews."""
    return _canvas(children).reduce(2)


def halve_premultiplied(children: Mapping[TileXY, Image.Image]) -> Image.Image:
    """The children's mosaic averaged 2 x 2 with premultiplied alpha, so transparent black does not darken the
    edges of the imagery: the story's tiles."""
    small = _canvas(children).convert("RGBa").resize((TILE_SIZE_PX, TILE_SIZE_PX), Image.Resampling.BOX)
    return small.convert("RGBA")


def encode_jpeg_or_png(img: Image.Image) -> bytes:
    """JPEG when the tile is fully covered, else PNG (its uncovered part stays transparent)."""
    buf = io.BytesIO()
    alpha_min, _ = img.getchannel("A").getextrema()
    if alpha_min == 255:
        img.convert("RGB").save(buf, format="JPEG", quality=JPEG_QUALITY)
    else:
        img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def content_type(data: bytes) -> str:
    """The MIME type of a tile ``encode_jpeg_or_png`` made."""
    return "image/jpeg" if data[:2] == b"\xff\xd8" else "image/png"


OVERVIEW_STYLE = PyramidStyle(downsample=halve_straight, encode=encode_jpeg_or_png)


def parent_tiles(tiles: Iterable[TileXY]) -> set[TileXY]:
    """The tiles one zoom up that hold these tiles."""
    return {(x >> 1, y >> 1) for x, y in tiles}


def _next_level(level: Mapping[TileXY, Image.Image], style: PyramidStyle) -> dict[TileXY, Image.Image]:
    """The tiles one zoom up from a level's tiles, each from the children it has."""
    groups: dict[TileXY, dict[TileXY, Image.Image]] = {}
    for (x, y), img in level.items():
        groups.setdefault((x >> 1, y >> 1), {})[(x & 1, y & 1)] = img
    return {key: style.downsample(kids) for key, kids in groups.items()}


def build_pyramid(
    base: Mapping[TileXY, Image.Image], base_z: int, min_z: int, sink: TileSink, style: PyramidStyle
) -> dict[int, list[TileXY]]:
    """Encode the base tiles (zoom ``base_z``) and every tile above them up to zoom ``min_z`` into the sink.

    Returns {z: [(x, y), ...]} of the tiles stored, in x, y order; a zoom where none was stored is left out."""
    written: dict[int, list[TileXY]] = {}
    level = dict(base)
    for z in range(base_z, min_z - 1, -1):
        if z < base_z:
            level = _next_level(level, style)
        for (x, y), img in sorted(level.items()):
            data = style.encode(img)
            if data is not None:
                sink.put(z, x, y, data)
                written.setdefault(z, []).append((x, y))
    return written
