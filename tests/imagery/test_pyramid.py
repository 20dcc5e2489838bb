"""The one tile-pyramid builder (imagery.pyramid) and its sinks: a folder of files, the cache's overview table."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from amberwatch.imagery.overview import CacheOverviewSink
from amberwatch.imagery.pyramid import (
    OVERVIEW_STYLE,
    FolderSink,
    build_pyramid,
    halve_premultiplied,
    halve_straight,
    parent_tiles,
)
from tests.imagery.conftest import uniform_png

X0, Y0, Z = 4 * 1000, 4 * 700, 14


def rgba(colour: tuple[int, int, int, int]) -> Image.Image:
    return Image.new("RGBA", (256, 256), colour)


def decoded(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGBA"))


def test_build_pyramid_writes_every_level_into_a_folder(tmp_path):
    base = {(X0 + dx, Y0 + dy): rgba((200, 100, 50, 255)) for dx in range(4) for dy in range(4)}
    base[(X0 + 4, Y0)] = rgba((10, 10, 10, 255))  # one more tile, in the next z-2 block
    sink = FolderSink(tmp_path, "img")
    written = build_pyramid(base, Z, Z - 2, sink, OVERVIEW_STYLE)
    sink.close()
    assert written[Z] == sorted(base)
    assert written[Z - 1] == sorted(parent_tiles(base))
    assert written[Z - 2] == [(X0 // 4, Y0 // 4), (X0 // 4 + 1, Y0 // 4)]
    full = (tmp_path / f"{Z - 2}/{X0 // 4}/{Y0 // 4}.img").read_bytes()
    assert full[:2] == b"\xff\xd8" and abs(decoded(full)[..., :3].astype(int) - (200, 100, 50)).max() <= 2
    partial = decoded((tmp_path / f"{Z - 2}/{X0 // 4 + 1}/{Y0 // 4}.img").read_bytes())
    assert partial[0, 0, 3] == 255 and partial[-1, -1, 3] == 0  # PNG: what has no tile under it stays transparent


def test_both_halvings_average_a_half_covered_edge_without_darkening_it():
    edge = Image.new("RGBA", (256, 256), (0, 0, 0, 0))
    edge.paste(rgba((240, 240, 240, 255)).crop((0, 0, 129, 256)))
    for halve in (halve_premultiplied, halve_straight):
        px = np.asarray(halve({(1, 1): edge}))
        assert tuple(px[200, 150]) == (240, 240, 240, 255), halve.__name__  # covered
        assert px[200, 192, 3] == 128 and px[200, 192, 0] >= 238, halve.__name__  # half covered: not darkened
        assert px[200, 200, 3] == 0 and px[50, 50, 3] == 0, halve.__name__  # uncovered, and an absent child


def test_cache_sink_stores_content_type_and_base_count(cache):
    for dx in range(2):
        cache.put("src", Z, X0 + dx, Y0, uniform_png((1, 2, 3)), content_type="image/png")
    sink = CacheOverviewSink(cache, "src", Z)
    sink.put(Z - 1, X0 // 2, Y0 // 2, OVERVIEW_STYLE.encode(rgba((1, 2, 3, 255))))
    sink.put(Z - 2, X0 // 4, Y0 // 4, OVERVIEW_STYLE.encode(rgba((1, 2, 3, 0))))
    sink.close()
    one = cache.get_overview("src", Z, Z - 1, X0 // 2, Y0 // 2)
    two = cache.get_overview("src", Z, Z - 2, X0 // 4, Y0 // 4)
    assert (one.content_type, one.n_base) == ("image/jpeg", 2)
    assert (two.content_type, two.n_base) == ("image/png", 2)
