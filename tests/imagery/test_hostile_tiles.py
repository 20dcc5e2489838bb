"""Hostile tiles against the real tile server and real tile folders: bombs, odd sizes, slow drips, junk bodies."""

from __future__ import annotations

import subprocess
import time
import warnings
from pathlib import Path

import pytest

from amberwatch.errors import (
    ImageError,
    ImageryError,
    ImageTooLargeError,
    OversizedTileWarning,
    ResampledTileWarning,
    TileTooLargeError,
)
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.decode import MAX_TILE_PIXELS, decode_image
from amberwatch.imagery.open import open_source
from tests.fixtures.rss import peak_rss
from tests.fixtures.tileserver import bomb_png, gzip_bomb

from .conftest import tile_png

Z, X, Y = 18, 150000, 86000
REPO = Path(__file__).resolve().parents[2]


def test_decompression_bomb_is_refused_from_its_header_naming_it() -> None:
    with pytest.raises(ImageTooLargeError, match=r"^bomb\.png: image is too large"):
        decode_image(bomb_png(), "bomb.png")  # above Pillow's own limit
    small_bomb = bomb_png(2000)  # under Pillow's limit, far above a tile's
    assert decode_image(small_bomb, "ok as a photo").shape == (2000, 2000, 3)
    with pytest.raises(ImageTooLargeError, match=r"tile z=1: image of 2000x2000 px is above the limit"):
        decode_image(small_bomb, "tile z=1", max_pixels=MAX_TILE_PIXELS)


def test_bomb_tile_from_the_server_fails_that_tile_once_with_a_typed_warning(tile_server, cache: TileCache) -> None:
    keys = [(Z, X + i, Y) for i in range(3)]
    for i, k in enumerate(keys):
        tile_server.tiles[k] = tile_png(i)
    tile_server.faults[keys[1]] = ["bomb"] * 5
    with open_source(tile_server.url, cache=cache, max_retries=3) as src:
        with pytest.warns(OversizedTileWarning, match=f"z=18 x={X + 1} y={Y}"):
            got = dict(src.read_tiles(keys))
        with pytest.warns(OversizedTileWarning), pytest.raises(TileTooLargeError, match="decompression bomb"):
            src.read_tile(*keys[1])
    assert got[keys[0]] is not None and got[keys[2]] is not None
    assert isinstance(got[keys[1]], TileTooLargeError)
    assert f"/18/{X + 1}/{Y}.png" in str(got[keys[1]])
    # Refused from the header and never retried: one request per read, nothing cached.
    assert tile_server.tile_requests().count(f"/18/{X + 1}/{Y}.png") == 2
    assert cache.get(src.source_id, *keys[1]) is None


def test_bomb_in_a_tile_folder_fails_that_tile_naming_the_file(tmp_path: Path, cache: TileCache) -> None:
    xdir = tmp_path / "tiles" / "18" / str(X)
    xdir.mkdir(parents=True)
    (xdir / f"{Y}.png").write_bytes(tile_png(1))
    (xdir / f"{Y + 1}.png").write_bytes(bomb_png())
    with open_source(str(tmp_path / "tiles"), cache=cache) as src, pytest.warns(OversizedTileWarning) as record:
        got = dict(src.read_tiles([(Z, X, Y), (Z, X, Y + 1)]))
    assert got[(Z, X, Y)] is not None
    assert isinstance(got[(Z, X, Y + 1)], TileTooLargeError)
    assert f"{Y + 1}.png" in str(record[0].message) and f"y={Y + 1}" in str(record[0].message)


def test_wrong_size_tile_is_resampled_with_a_warning(tile_server, cache: TileCache) -> None:
    tile_server.tiles[(Z, X, Y)] = tile_png(4, size=100)
    tile_server.tiles[(Z, X, Y + 1)] = tile_png(5)
    with open_source(tile_server.url, cache=cache) as src:
        with pytest.warns(ResampledTileWarning, match=f"z=18 x={X} y={Y} .* is 100x100 px"):
            img = src.read_tile(Z, X, Y)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ResampledTileWarning)
            assert src.read_tile(Z, X, Y + 1) is not None  # a 256 px tile: no warning
    assert img.pixels.shape == (256, 256, 3)


def test_slow_drip_tile_hits_the_total_deadline(tile_server, cache: TileCache) -> None:
    tile_server.tiles[(Z, X, Y)] = tile_png(6)
    tile_server.tiles[(Z, X, Y + 1)] = tile_png(7)
    tile_server.faults[(Z, X, Y)] = ["trickle"] * 3
    tile_server.trickle_interval_s = 0.2  # each read is quick; the whole tile would take hours
    with open_source(tile_server.url, cache=cache, timeout_s=1.0, deadline_s=1.5) as src:
        t0 = time.monotonic()
        got = dict(src.read_tiles([(Z, X, Y), (Z, X, Y + 1)]))
        elapsed = time.monotonic() - t0
    assert elapsed < 4.0, f"a dripping tile held the read for {elapsed:.1f} s"
    assert got[(Z, X, Y + 1)] is not None
    err = got[(Z, X, Y)]
    assert isinstance(err, ImageryError) and "1.5 s deadline" in str(err) and f"y={Y}" in str(err)
    assert tile_server.tile_requests().count(f"/18/{X}/{Y}.png") == 1  # a dripping server is not asked again


def test_junk_body_errors_name_the_tile_not_a_buffer(tile_server, cache: TileCache) -> None:
    tile_server.tiles[(Z, X, Y)] = b"<html>not a tile</html>"
    with open_source(tile_server.url, cache=cache, max_retries=0) as src, pytest.raises(ImageryError) as info:
        src.read_tile(Z, X, Y)
    assert "BytesIO" not in str(info.value) and f"tile z=18 x={X} y={Y}" in str(info.value)
    with pytest.raises(ImageError) as info:
        decode_image(b"junk", "example 7")
    assert str(info.value) == "example 7: not a readable image (cannot identify image file)"


def test_sqlite_side_files_are_git_ignored() -> None:
    names = ["amberwatch-tiles.mbtiles-wal", "amberwatch-tiles.mbtiles-shm", "amberwatch-tiles.mbtiles-journal"]
    names += ["amberwatch-features.sqlite-wal", "amberwatch.db-wal", "amberwatch-scan-0123abcd.lock"]
    try:
        done = subprocess.run(["git", "check-ignore", *names], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        pytest.skip("git is not available")
    if done.returncode == 128:
        pytest.skip("not a git checkout")
    assert sorted(done.stdout.split()) == sorted(names)


def test_redirect_loop_and_bad_gzip_fail_only_their_tile_once(tile_server, cache: TileCache) -> None:
    keys = [(Z, X + i, Y + 5) for i in range(3)]
    for i, k in enumerate(keys):
        tile_server.tiles[k] = tile_png(i)
    tile_server.faults[keys[0]] = ["redirect"] * 50  # 302 to itself, again and again
    tile_server.faults[keys[1]] = ["badgzip"] * 5  # "Content-Encoding: gzip" over a plain PNG
    with open_source(tile_server.url, cache=cache) as src:
        got = dict(src.read_tiles(keys))
    assert got[keys[2]] is not None
    loop, bad = got[keys[0]], got[keys[1]]
    assert isinstance(loop, ImageryError) and f"tile z=18 x={X} y={Y + 5}" in str(loop)
    assert "redirects in a loop" in str(loop)
    assert isinstance(bad, ImageryError) and f"tile z=18 x={X + 1} y={Y + 5}" in str(bad)
    assert "does not match its Content-Encoding" in str(bad)
    # Not retried: the same would come again within the run.
    assert tile_server.tile_requests().count(f"/18/{X}/{Y + 5}.png") == 21  # the request and 20 redirects
    assert tile_server.tile_requests().count(f"/18/{X + 1}/{Y + 5}.png") == 1


def test_nested_gzip_bomb_is_refused_from_its_headers(tile_server, cache: TileCache) -> None:
    tile_server.tiles[(Z, X, Y)] = tile_png(1)
    tile_server.faults[(Z, X, Y)] = ["gzip2bomb"] * 5  # gzip inside gzip: a few KB would unpack to 512 MiB
    gzip_bomb(tile_server.gzip_bomb_bytes)
    with open_source(tile_server.url, cache=cache) as src:
        ((_, got),) = list(src.read_tiles([(Z, X, Y)]))
    assert isinstance(got, ImageryError) and f"tile z=18 x={X} y={Y}" in str(got)
    assert "Content-Encoding 'gzip, gzip'; only one layer of gzip or deflate" in str(got)
    assert tile_server.tile_requests().count(f"/18/{X}/{Y}.png") == 1


@pytest.mark.parametrize(
    ("fault", "cap"),
    [
        ("gzipbomb", "MAX_TILE_DECODED_BYTES"),
        ("huge", "MAX_TILE_WIRE_BYTES"),
        ("hugenolength", "MAX_TILE_DECODED_BYTES"),
    ],
)
def test_bodies_past_the_byte_caps_are_cut_short_and_not_retried(tile_server, cache: TileCache, fault, cap) -> None:
    keys = [(Z, X + i, Y + 7) for i in range(9)]
    for i, k in enumerate(keys):
        tile_server.tiles[k] = tile_png(i)
    for k in keys[:8]:  # 8 at once, as many as a worker has in flight
        tile_server.faults[k] = [fault] * 5
    tile_server.gzip_bomb_bytes = 2**26  # 64 MiB of zeros in 65 KB on the wire, 512 MiB for the 8
    gzip_bomb(tile_server.gzip_bomb_bytes)  # made (and cached) once, not by 8 server threads at once
    tile_server.huge_bytes = 300 * 2**20
    source = open_source(tile_server.url, cache=cache, max_concurrency=8)
    with source as src, peak_rss() as rss, pytest.warns(OversizedTileWarning):
        got = dict(src.read_tiles(keys))
    assert got[keys[8]] is not None
    for x, k in enumerate(keys[:8], start=X):
        assert isinstance(got[k], TileTooLargeError) and f"tile z=18 x={x} y={Y + 7}" in str(got[k])
        assert cap in str(got[k])
        assert tile_server.tile_requests().count(f"/18/{x}/{Y + 7}.png") == 1
    # Measured with psutil: 8 capped bodies at once grew this process by far less than their 512 MiB (~75 MiB).
    grown_mib = (rss["peak_bytes"] - rss["start_bytes"]) / 2**20
    assert grown_mib < 200, f"reading 8 capped bodies grew RSS by {grown_mib:.0f} MiB"


def test_tile_deadline_bounds_all_tries_of_a_stalling_server(tile_server, cache: TileCache) -> None:
    tile_server.tiles[(Z, X, Y)] = tile_png(1)
    tile_server.faults[(Z, X, Y)] = ["timeout"] * 10  # headers held 0.6 s, past the 0.2 s read timeout
    tile_server.timeout_s = 0.6
    with open_source(tile_server.url, cache=cache, timeout_s=0.2, deadline_s=1.0, max_retries=4) as src:
        t0 = time.monotonic()
        with pytest.raises(ImageryError, match=r"tile z=18 x=150000 y=86000 .* 1 s deadline per tile"):
            src.read_tile(Z, X, Y)
        elapsed = time.monotonic() - t0
    assert elapsed < 1.5, f"one tile took {elapsed:.1f} s with a 1 s deadline"


def test_retry_after_past_the_tile_deadline_fails_at_once(tile_server, cache: TileCache) -> None:
    tile_server.tiles[(Z, X, Y)] = tile_png(1)
    tile_server.faults[(Z, X, Y)] = ["429"] * 10
    tile_server.retry_after_s = 100_000
    with open_source(tile_server.url, cache=cache, deadline_s=5.0, max_retries=1) as src:
        t0 = time.monotonic()
        with pytest.raises(ImageryError, match=r"5 s deadline per tile.*HTTP 429.*after 60 s more"):
            src.read_tile(Z, X, Y)
        elapsed = time.monotonic() - t0
    assert elapsed < 2.0, f"a 429 with Retry-After: 100000 held the tile {elapsed:.1f} s"
    assert tile_server.tile_requests().count(f"/18/{X}/{Y}.png") == 1
