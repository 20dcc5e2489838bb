"""HTTP tile sources against a real tile server on 127.0.0.1: cache-first reads, faults, retries, URL forms."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest

from amberwatch.errors import ImageryError, InvalidInputError
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.open import open_source
from amberwatch.imagery.xyz import USER_AGENT, HttpOptions, XyzTileSource

from .conftest import tile_png, uniform_png

Z, X, Y = 18, 150000, 86000


def _fast(src) -> None:
    src.backoff_base_s = 0.01


def test_read_tile_is_cache_first(tile_server, cache: TileCache) -> None:
    tile_server.tiles[(Z, X, Y)] = tile_png(42)
    with open_source(tile_server.url, cache=cache) as src:
        img = src.read_tile(Z, X, Y)
        assert img is not None and img.pixels.shape == (256, 256, 3)
        assert tuple(img.pixels[0, 0]) == (42, 7, 9)
        assert img.tile == (X, Y, Z) and img.source_id == src.source_id
        assert img.bbox.west_deg < img.bbox.east_deg
        assert abs(img.resolution_m_per_px - 0.37) < 0.05  # z18 at ~50N
        n = len(tile_server.requests)
        assert n == 1 and cache.count(src.source_id) == 1
    # A new source over the same spec and cache makes no HTTP request at all.
    with open_source(tile_server.url, cache=cache) as again:
        assert again.source_id == src.source_id
        assert np.array_equal(again.read_tile(Z, X, Y).pixels, img.pixels)
        assert dict(again.read_tiles([(Z, X, Y)]))[(Z, X, Y)] is not None
    assert len(tile_server.requests) == n
    assert cache.source_spec(src.source_id) == tile_server.url


def test_read_tiles_concurrent_mixed_results(tile_server, cache: TileCache) -> None:
    keys = [(Z, X + i, Y) for i in range(12)]
    for i, k in enumerate(keys[:10]):
        tile_server.tiles[k] = tile_png(i)
    tile_server.tiles[keys[10]] = uniform_png((0, 0, 0, 0))  # fully transparent: blank
    # keys[11] is absent: 404
    with open_source(tile_server.url, cache=cache, max_concurrency=4) as src:
        got = dict(src.read_tiles(iter(keys)))
    assert set(got) == set(keys)
    for i, k in enumerate(keys[:10]):
        assert tuple(got[k].pixels[0, 0]) == (i, 7, 9)
    assert got[keys[10]] is None and got[keys[11]] is None
    assert cache.get(src.source_id, *keys[10]).status == "empty"
    assert cache.get(src.source_id, *keys[11]).status == "empty"


def test_404_and_uniform_tiles_are_recorded_empty_and_not_refetched(tile_server, cache: TileCache) -> None:
    tile_server.tiles[(Z, X, Y + 1)] = uniform_png((200, 210, 220))
    tile_server.tiles[(Z, X, Y + 2)] = b""  # an empty 200 also means no imagery
    with open_source(tile_server.url, cache=cache) as src:
        from amberwatch.errors import BlankTileWarning, NoImageryWarning

        with pytest.warns(NoImageryWarning):
            assert src.read_tile(Z, X, Y) is None
        with pytest.warns(BlankTileWarning):
            assert src.read_tile(Z, X, Y + 1) is None
        assert src.read_tile(Z, X, Y + 2) is None
        row = cache.get(src.source_id, Z, X, Y)
        assert row.status == "empty" and row.data is None
        assert cache.get(src.source_id, Z, X, Y + 2).status == "empty"
        n = len(tile_server.requests)
        assert n == 3
        assert all(src.read_tile(Z, X, Y + i) is None for i in range(3))
        assert len(tile_server.requests) == n


def test_500_then_success_is_retried(tile_server, cache: TileCache) -> None:
    tile_server.tiles[(Z, X, Y)] = tile_png(1)
    tile_server.faults[(Z, X, Y)] = ["500", "503"]
    with open_source(tile_server.url, cache=cache) as src:
        _fast(src)
        assert src.read_tile(Z, X, Y) is not None
    assert len(tile_server.requests) == 3


def test_429_honours_retry_after(tile_server, cache: TileCache) -> None:
    tile_server.tiles[(Z, X, Y)] = tile_png(1)
    tile_server.faults[(Z, X, Y)] = ["429"]
    tile_server.retry_after_s = 1
    with open_source(tile_server.url, cache=cache) as src:
        _fast(src)  # the backoff alone would retry after ~10 ms
        t0 = time.monotonic()
        assert src.read_tile(Z, X, Y) is not None
        elapsed = time.monotonic() - t0
    assert 0.95 <= elapsed < 3.0
    assert len(tile_server.requests) == 2


def test_timeout_is_retried(tile_server, cache: TileCache) -> None:
    tile_server.tiles[(Z, X, Y)] = tile_png(1)
    tile_server.faults[(Z, X, Y)] = ["timeout"]
    tile_server.timeout_s = 3.0  # the stalled reply; the client gives up after 0.2 s and asks again
    with open_source(tile_server.url, cache=cache, timeout_s=0.2) as src:
        _fast(src)
        t0 = time.monotonic()
        assert src.read_tile(Z, X, Y) is not None
        assert time.monotonic() - t0 < 2.0  # wide of 0.2 s + a retry even on a loaded machine, far from 3 s
    assert len(tile_server.requests) == 2


@pytest.mark.parametrize(("fmt", "ctype"), [("PNG", "image/png"), ("JPEG", "image/jpeg")])
def test_truncated_body_retried_then_recovers(tile_server, cache: TileCache, fmt: str, ctype: str) -> None:
    tile_server.content_type = ctype
    tile_server.tiles[(Z, X, Y)] = tile_png(3, fmt=fmt)
    tile_server.faults[(Z, X, Y)] = ["truncated"]
    with open_source(tile_server.url, cache=cache) as src:
        _fast(src)
        img = src.read_tile(Z, X, Y)
    assert img is not None and len(tile_server.requests) == 2
    row = cache.get(src.source_id, Z, X, Y)
    assert row.content_type == ctype and row.data == tile_server.tiles[(Z, X, Y)]


def test_persistent_failure_raises_imagery_error_and_is_not_cached(tile_server, cache: TileCache) -> None:
    tile_server.tiles[(Z, X, Y)] = tile_png(3, fmt="JPEG")
    tile_server.faults[(Z, X, Y)] = ["truncated"] * 3
    with open_source(tile_server.url, cache=cache, max_retries=2) as src:
        _fast(src)
        with pytest.raises(ImageryError, match=r"z=18 x=150000 y=86000.*127\.0\.0\.1.*3 attempts.*truncated"):
            src.read_tile(Z, X, Y)
        assert cache.get(src.source_id, Z, X, Y) is None
        # read_tiles returns the error instead of raising; the next run retries and succeeds.
        tile_server.faults[(Z, X, Y)] = ["500"] * 3
        ((key, res),) = list(src.read_tiles([(Z, X, Y)]))
        assert key == (Z, X, Y) and isinstance(res, ImageryError)
        assert src.read_tile(Z, X, Y) is not None


def test_dead_server_is_imagery_error_naming_the_url(cache: TileCache) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/{{z}}/{{x}}/{{y}}.png"
    with open_source(url, cache=cache) as src:
        t0 = time.monotonic()
        with pytest.raises(ImageryError, match=f"127.0.0.1:{port}/18/{X}/{Y}.png"):
            src.read_tile(Z, X, Y)
        assert time.monotonic() - t0 < 2


def test_headers_user_agent_and_api_key_from_env(tile_server, cache: TileCache, monkeypatch) -> None:
    monkeypatch.setenv("AW_TEST_KEY", "s3cret-value")
    tile_server.tiles[(Z, X, Y)] = tile_png(5)
    url = tile_server.url + "?api_key={key}"
    src = open_source(
        url,
        cache=cache,
        headers={"X-Auth": "Bearer {key}", "Referer": "https://example.org/"},
        api_key_env="AW_TEST_KEY",
    )
    with src:
        assert src.read_tile(Z, X, Y) is not None
    path, headers = tile_server.requests[0]
    assert path.endswith("?api_key=s3cret-value")
    assert headers["X-Auth"] == "Bearer s3cret-value" and headers["Referer"] == "https://example.org/"
    assert headers["User-Agent"] == USER_AGENT and USER_AGENT.startswith("amberwatch/")
    assert "s3cret" not in src.spec and "s3cret" not in src.source_id
    assert "s3cret" not in (cache.source_spec(src.source_id) or "")
    # Failing fetches do not leak the key either.
    tile_server.faults[(Z, X, Y + 1)] = ["500"]
    with (
        open_source(url, cache=cache, api_key_env="AW_TEST_KEY", max_retries=0) as src2,
        pytest.raises(ImageryError) as info,
    ):
        src2.read_tile(Z, X, Y + 1)
    assert "s3cret" not in str(info.value)


def test_literal_secret_in_url_is_redacted(tile_server) -> None:
    with open_source(tile_server.url + "?access_token=abcd1234") as src:
        assert "abcd1234" not in src.spec and "***" in src.spec


def test_api_key_env_missing_is_invalid_input(tile_server, monkeypatch) -> None:
    monkeypatch.delenv("AW_MISSING_KEY", raising=False)
    with pytest.raises(InvalidInputError, match="AW_MISSING_KEY"):
        open_source(tile_server.url + "?k={key}", api_key_env="AW_MISSING_KEY")
    with pytest.raises(InvalidInputError, match="api_key_env"):
        open_source(tile_server.url + "?k={key}")


def test_quadkey_and_tms_templates_hit_the_right_tiles(tile_server, cache: TileCache) -> None:
    tile_server.tiles[(Z, X, Y)] = tile_png(77)
    for template in (tile_server.base + "/q/{q}.png", tile_server.base + "/tms/{z}/{x}/{-y}.png"):
        with open_source(template, cache=cache) as src:
            img = src.read_tile(Z, X, Y)
            assert img is not None and tuple(img.pixels[0, 0]) == (77, 7, 9)
    paths = tile_server.tile_requests()
    assert paths[0] == f"/q/{__import__('mercantile').quadkey(X, Y, Z)}.png"
    assert paths[1] == f"/tms/{Z}/{X}/{2**Z - 1 - Y}.png"


def test_subdomains_rotate_deterministically() -> None:
    src = XyzTileSource("https://{s}.tile.example/{z}/{x}/{y}.png")
    assert {src.tile_url(2, x, 0).split(".")[0] for x in range(3)} == {"https://a", "https://b", "https://c"}
    inline = XyzTileSource("https://t{s:0123}.example/{z}/{x}/{y}.png")
    assert inline.tile_url(2, 3, 0).startswith("https://t3.")
    assert inline.spec == "https://t{s}.example/{z}/{x}/{y}.png"


def test_http_options_are_one_checked_value() -> None:
    src = XyzTileSource("https://t.example/{z}/{x}/{y}.png", http=HttpOptions(max_retries=0, timeout_s=2.0))
    assert (src.max_retries, src.timeout_s) == (0, 2.0)
    for bad, named in [({"max_retries": -1}, "max_retries -1"), ({"deadline_s": 0.0}, "deadline_s 0.0")]:
        with pytest.raises(InvalidInputError, match=named):
            HttpOptions(**bad)
    with pytest.raises(InvalidInputError, match="requests_per_s 0"):
        open_source("https://t.example/{z}/{x}/{y}.png", requests_per_s=0)


def test_unknown_specs_and_placeholders_are_named() -> None:
    with pytest.raises(InvalidInputError, match=r"No.Such.Preset"):
        open_source("No.Such.Preset")
    with pytest.raises(InvalidInputError, match=r"\{foo\}"):
        open_source("https://h/{z}/{x}/{y}/{foo}.png")
    with pytest.raises(InvalidInputError, match="needs"):
        open_source("https://h/tile.png")


def test_preset_resolves_without_network() -> None:
    with open_source("Esri.WorldImagery") as src:
        assert src.spec == "Esri.WorldImagery"
        url = src.tile_url(18, X, Y)
        assert url.endswith(f"/World_Imagery/MapServer/tile/18/{Y}/{X}") and "{" not in url
        assert src.attribution and "Esri" in src.attribution
    with pytest.raises(InvalidInputError, match="api_key_env"):
        open_source("Thunderforest.OpenCycleMap")


def test_concurrency_is_bounded(tile_server) -> None:
    keys = [(Z, X + i, Y) for i in range(6)]
    for k in keys:
        tile_server.tiles[k] = tile_png(k[1] % 200)
        tile_server.faults[k] = ["timeout"]  # each first request takes timeout_s, then 504 -> retried
    tile_server.timeout_s = 0.3
    timings = {}
    for conc in (2, 6):
        for k in keys:
            tile_server.faults[k] = ["timeout"]
        with open_source(tile_server.url, max_concurrency=conc, timeout_s=2.0) as src:
            _fast(src)
            t0 = time.monotonic()
            assert all(v is not None for _, v in src.read_tiles(keys))
            timings[conc] = time.monotonic() - t0
    assert timings[2] >= 0.85  # three waves of 0.3 s
    assert timings[6] < timings[2] - 0.3


def test_requests_per_second_is_bounded(tile_server) -> None:
    keys = [(Z, X + i, Y) for i in range(11)]
    for k in keys:
        tile_server.tiles[k] = tile_png(k[1] % 200)
    with open_source(tile_server.url, requests_per_s=20.0) as src:
        t0 = time.monotonic()
        assert len(list(src.read_tiles(keys))) == 11
        assert time.monotonic() - t0 >= 0.45  # 10 intervals of 50 ms


def test_read_tiles_streams_its_input(tile_server) -> None:
    pulled = []

    def endless():
        i = 0
        while True:
            pulled.append(i)
            yield (Z, X + i, Y)
            i += 1

    with open_source(tile_server.url, max_concurrency=2) as src:
        results = src.read_tiles(endless())
        first = [next(results) for _ in range(5)]
        results.close()
    assert all(v is None for _, v in first)  # 404s
    assert len(pulled) <= 5 + 4 + 1


def test_read_tile_works_inside_a_running_event_loop(tile_server, cache: TileCache) -> None:
    import asyncio
    import concurrent.futures

    tile_server.tiles[(Z, X, Y)] = tile_png(9)

    async def handler() -> object:
        with open_source(tile_server.url, cache=cache) as src:
            return src.read_tile(Z, X, Y)

    # In its own thread: Playwright's sync API (browser tests earlier in the process) keeps a loop on this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert pool.submit(asyncio.run, handler()).result() is not None


def test_read_tile_from_many_threads(tile_server, cache: TileCache) -> None:
    from concurrent.futures import ThreadPoolExecutor

    keys = [(Z, X + i, Y) for i in range(16)]
    for k in keys:
        tile_server.tiles[k] = tile_png(k[1] % 200)
    with open_source(tile_server.url, cache=cache) as src, ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda k: src.read_tile(*k), keys))
    assert all(g is not None for g in got) and cache.count(src.source_id) == 16


def test_mercantile_tiles_are_accepted_and_source_survives_fork(tile_server, tmp_path) -> None:
    import multiprocessing

    import mercantile

    tile_server.tiles[(Z, X, Y)] = tile_png(4)
    tile_server.tiles[(Z, X + 1, Y)] = tile_png(5)
    src = open_source(tile_server.url)
    ((key, img),) = list(src.read_tiles([mercantile.Tile(X, Y, Z)]))  # (x, y, z) order
    assert key == (Z, X, Y) and tuple(img.pixels[0, 0]) == (4, 7, 9)
    # The loop thread is running now; a forked child (a scan worker) must still be able to fetch.
    global _FORKED_SOURCE
    _FORKED_SOURCE = src
    ctx = multiprocessing.get_context("fork")
    parent_end, child_end = ctx.Pipe()
    proc = ctx.Process(target=_read_in_child, args=(child_end,))
    proc.start()
    assert parent_end.poll(20) and parent_end.recv() == 5
    proc.join(10)
    src.close()


_FORKED_SOURCE = None


def _read_in_child(conn) -> None:
    conn.send(int(_FORKED_SOURCE.read_tile(Z, X + 1, Y).pixels[0, 0, 0]))
    _FORKED_SOURCE.close()
