"""HTTP tile sources: XYZ/TMS/quadkey URL templates and xyzservices presets, fetched with async httpx.

Fetching runs on one private event loop thread per source, so the synchronous API works from any
thread (including inside someone else's running event loop). Concurrency and requests per second
are bounded; 429 (Retry-After honoured, capped), 5xx, timeouts, broken connections and corrupt bodies
are retried with exponential backoff and jitter, all within one deadline per tile. Bodies are streamed
and capped in wire and decoded bytes; redirect loops, bad content encodings and bodies past a cap fail the
tile at once (the same would come again). 404/410/204 and empty 200 bodies mean "no imagery".
Secrets (the API key) are substituted only into the outgoing request, never into the spec, the source id or messages.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import email.utils
import os
import random
import re
import threading
import time
from collections.abc import Coroutine, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from amberwatch import __version__
from amberwatch.errors import (
    ImageError,
    ImageryError,
    ImageTooLargeError,
    InvalidInputError,
    TileTooLargeError,
    UnreachableError,
)
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.decode import MAX_TILE_PIXELS, decode_with_valid
from amberwatch.imagery.sources import _MISS, FetchedTile, TileKey, TileRead, TileSource, spec_hash, tile_key
from amberwatch.imagery.tiles import check_tile, tile_to_quadkey, xyz_to_tms_y
from amberwatch.imagery.types import FULL_DATE_FORM

USER_AGENT = f"amberwatch/{__version__} (+https://github.com/amberwatch)"
MAX_RETRY_AFTER_S = 60.0
BACKOFF_CAP_S = 30.0
DEFAULT_DEADLINE_S = 30.0  # longest one tile may take, from its first request: all tries and waits included
# Caps on one tile's HTTP body. The largest tile accepted is 1024 x 1024 px (MAX_TILE_PIXELS); even stored
# uncompressed as 16-bit RGBA (8 bytes a px) its file is 8 MiB: allow that plus 1 MiB of headers and metadata.
# HTTP content coding (gzip) only shrinks a real image file, so the wire cap is the decoded cap plus gzip's
# framing. Reading stops at the first chunk past a cap, so a gzip bomb costs at most the cap plus one network
# read (64 KiB) expanded at deflate's ~1030:1 (~66 MB) per tile in flight, never the bomb's full size.
MAX_TILE_DECODED_BYTES = 8 * MAX_TILE_PIXELS + 2**20
MAX_TILE_WIRE_BYTES = MAX_TILE_DECODED_BYTES + 2**16
_ACCEPT_ENCODING = "gzip, deflate"  # one layer of deflate at most: brotli/zstd or nested gzip expand far more
DEFAULT_SUBDOMAINS = "abc"

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_KNOWN = {"z", "x", "y", "-y", "q", "s", "r", "key", "date", "time"}  # {r}: Leaflet retina suffix, always ""
_SECRET_PARAMS = re.compile(
    r"(?i)^(api[_-]?key|key|token|access[_-]?token|accesstoken|apikey|sig|signature|password|secret)$"
)
_EMPTY_STATUSES = {204, 404, 410}
_RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504}


def redact_url(url: str) -> str:
    """The URL with the values of secret-looking query parameters replaced by '***'."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if not any(_SECRET_PARAMS.match(k) and v and v != "{key}" for k, v in pairs):
        return url
    cleaned = [(k, "***" if _SECRET_PARAMS.match(k) and v and v != "{key}" else v) for k, v in pairs]
    return urlunsplit(parts._replace(query=urlencode(cleaned, safe="{}*")))


def parse_template(template: str) -> tuple[str, str | None]:
    """Validate a URL template; return it normalised ({s:abc} -> {s}) and its inline subdomains."""
    subdomains = None
    names = _PLACEHOLDER.findall(template)
    for name in names:
        if name.startswith("s:"):
            subdomains = name[2:]
            if not subdomains:
                raise InvalidInputError(f"URL template {redact_url(template)!r}: '{{s:}}' lists no subdomains")
        elif name not in _KNOWN:
            raise InvalidInputError(
                f"URL template {redact_url(template)!r} has unknown placeholder {{{name}}}"
                " (known: {z} {x} {y} {-y} {q} {s} {s:abc} {key} {date} {time})"
            )
    normalised = re.sub(r"\{s:[^{}]*\}", "{s}", template)
    found = set(_PLACEHOLDER.findall(normalised))
    if "q" not in found and not ({"z", "x"} <= found and ({"y", "-y"} & found)):
        raise InvalidInputError(
            f"URL template {redact_url(template)!r} needs {{z}}, {{x}} and {{y}} (or {{-y}} for TMS) or {{q}} (quadkey)"
        )
    return normalised, subdomains


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or HTTP date); None when absent/invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _LoopThread:
    """A private asyncio loop in a daemon thread, with one shared httpx.AsyncClient."""

    def __init__(self, *, headers: dict[str, str], timeout_s: float, max_concurrency: int, requests_per_s: float):
        self._headers = headers
        self._timeout_s = timeout_s
        self.max_concurrency = max_concurrency
        self._interval_s = 1.0 / requests_per_s if requests_per_s > 0 else 0.0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self.client: httpx.AsyncClient | None = None
        self.semaphore: asyncio.Semaphore | None = None
        self._rate_lock: asyncio.Lock | None = None
        self._next_slot = 0.0

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._pid != os.getpid():
                # A forked child inherits the loop object but not its thread: start afresh.
                self._lock = threading.Lock()
                self._loop = self._thread = self.client = None
                self._pid = os.getpid()
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="amberwatch-tiles", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
                asyncio.run_coroutine_threadsafe(self._setup(), loop).result()
            return self._loop

    async def _setup(self) -> None:
        limits = httpx.Limits(max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency)
        self.client = httpx.AsyncClient(
            headers=self._headers, timeout=httpx.Timeout(self._timeout_s), limits=limits, follow_redirects=True
        )
        self.semaphore = asyncio.Semaphore(self.max_concurrency)
        self._rate_lock = asyncio.Lock()

    async def throttle(self) -> None:
        """Wait for the next request slot allowed by requests_per_s."""
        if self._interval_s <= 0:
            return
        assert self._rate_lock is not None
        async with self._rate_lock:
            now = time.monotonic()
            slot = max(now, self._next_slot)
            self._next_slot = slot + self._interval_s
        if slot > now:
            await asyncio.sleep(slot - now)

    def submit(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future:
        """Schedule a coroutine on the loop thread."""
        return asyncio.run_coroutine_threadsafe(coro, self._start())

    def close(self) -> None:
        """Close the client and stop the loop thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or self._pid != os.getpid():
            return  # nothing started, or a forked child holding its parent's (thread-less) loop
        if self.client is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self.client.aclose(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=5)
        loop.close()


def _check_limits(
    max_concurrency: int, requests_per_s: float, timeout_s: float, max_retries: int, deadline_s: float
) -> None:
    if not deadline_s > 0:
        raise InvalidInputError(f"deadline_s {deadline_s!r} must be positive")
    if max_concurrency < 1:
        raise InvalidInputError(f"max_concurrency {max_concurrency!r} must be at least 1")
    if not requests_per_s > 0:
        raise InvalidInputError(f"requests_per_s {requests_per_s!r} must be positive")
    if not timeout_s > 0:
        raise InvalidInputError(f"timeout_s {timeout_s!r} must be positive")
    if max_retries < 0:
        raise InvalidInputError(f"max_retries {max_retries!r} must be >= 0")


@dataclass(frozen=True)
class HttpOptions:
    """How an HTTP tile source fetches (not which imagery): headers, API key variable, concurrency, rate, limits.

    ``timeout_s`` bounds each network wait (connect, each read); ``deadline_s`` bounds one whole tile, all tries
    and waits included, so neither a dripping nor a stalling server holds a tile longer than that.
    """

    headers: dict[str, str] | None = None
    api_key_env: str | None = None
    max_concurrency: int = 8
    requests_per_s: float = 50.0
    timeout_s: float = 20.0
    max_retries: int = 4
    deadline_s: float = DEFAULT_DEADLINE_S

    def __post_init__(self) -> None:
        _check_limits(self.max_concurrency, self.requests_per_s, self.timeout_s, self.max_retries, self.deadline_s)


def date_values(template: str, imagery_date: str | None) -> dict[str, str]:
    """The values of a template's {date} (YYYY-MM-DD) and {time} (the imagery date or release as given).

    InvalidInputError naming the template when it has one of them and no imagery date, or {date} and a date of
    another form."""
    uses = [name for name in ("date", "time") if f"{{{name}}}" in template]
    if not uses:
        return {}
    shown = redact_url(template)
    if imagery_date is None:
        raise InvalidInputError(
            f"URL template {shown!r} has {{{uses[0]}}}: give the imagery date (scan --imagery-date YYYY-MM-DD)"
        )
    if "date" in uses and not FULL_DATE_FORM.match(imagery_date):
        raise InvalidInputError(
            f"URL template {shown!r} has {{date}}, which needs an imagery date YYYY-MM-DD, not {imagery_date!r}"
        )
    return {"date": imagery_date, "time": imagery_date}


def _resolve_subdomains(template: str, given: str | list[str] | None, inline: str | None) -> list[str]:
    """Explicit subdomains win over the template's {s:abc}; a bare {s} falls back to DEFAULT_SUBDOMAINS."""
    subs = given if given is not None else inline
    if subs is None and "{s}" in template:
        subs = DEFAULT_SUBDOMAINS
    return list(subs) if subs else []


def _resolve_key(template: str, headers: dict[str, str], api_key_env: str | None) -> str | None:
    """The API key from api_key_env; it must be given exactly when the template or a header uses {key}."""
    uses_key = "{key}" in template or any("{key}" in v for v in headers.values())
    if not api_key_env:
        if uses_key:
            raise InvalidInputError(
                f"URL template or headers of {redact_url(template)!r} use {{key}}: pass api_key_env naming"
                " the environment variable holding the key"
            )
        return None
    key = os.environ.get(api_key_env)
    if not key:
        raise InvalidInputError(f"environment variable {api_key_env!r} (api_key_env) is not set or empty")
    if not uses_key:
        raise InvalidInputError(
            f"api_key_env {api_key_env!r} given but neither the URL template nor a header has a {{key}} placeholder"
        )
    return key


@dataclass(frozen=True)
class _Retry:
    """A failed attempt worth retrying: why, and how long the server asked us to wait (None: back off)."""

    problem: str
    delay: float | None = None


class _Deadline:
    """The time one tile may take, counted from its first request (after any queueing) to its last byte."""

    def __init__(self, deadline_s: float) -> None:
        self.deadline_s = deadline_s
        self._end: float | None = None

    def start(self) -> None:
        """Start the clock (a no-op once started)."""
        if self._end is None:
            self._end = time.monotonic() + self.deadline_s

    def left_s(self) -> float:
        """Seconds left before the deadline (all of it before the clock starts)."""
        return self.deadline_s if self._end is None else max(0.0, self._end - time.monotonic())


def _tile_name(tile: TileKey, shown: str) -> str:
    z, x, y = tile
    return f"tile z={z} x={x} y={y} from {shown}"


def _check_encoding(resp: httpx.Response, where: str) -> None:
    """ImageryError unless the body has at most one layer of gzip/deflate (whose expansion per read is bounded)."""
    codings = [c.strip().lower() for c in resp.headers.get("content-encoding", "").split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if len(codings) > 1 or (codings and codings[0] not in ("gzip", "deflate")):
        raise ImageryError(
            f"{where} came with Content-Encoding {resp.headers['content-encoding']!r}; only one layer of gzip or"
            " deflate is accepted for a tile"
        )


def _over_cap(where: str, what: str, cap_name: str, cap_bytes: int) -> TileTooLargeError:
    return TileTooLargeError(
        f"{where}: {what} is over {cap_name} ({cap_bytes / 2**20:g} MiB), far more than any tile; refused"
        " without reading further (a decompression bomb or not a tile), not retried"
    )


async def _read_body(resp: httpx.Response, where: str) -> bytes:
    """The decoded body of a streamed response, read only up to MAX_TILE_WIRE_BYTES / MAX_TILE_DECODED_BYTES."""
    _check_encoding(resp, where)
    declared = resp.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_TILE_WIRE_BYTES:
        raise _over_cap(
            where, f"the declared body of {int(declared):,} bytes", "MAX_TILE_WIRE_BYTES", MAX_TILE_WIRE_BYTES
        )
    chunks: list[bytes] = []
    decoded_bytes, over = 0, None
    stream = resp.aiter_bytes()
    try:
        async for chunk in stream:
            decoded_bytes += len(chunk)
            if resp.num_bytes_downloaded > MAX_TILE_WIRE_BYTES:
                over = ("the body on the wire", "MAX_TILE_WIRE_BYTES", MAX_TILE_WIRE_BYTES)
            elif decoded_bytes > MAX_TILE_DECODED_BYTES:
                over = ("the decoded body", "MAX_TILE_DECODED_BYTES", MAX_TILE_DECODED_BYTES)
            if over:
                break
            chunks.append(chunk)
    finally:
        await stream.aclose()  # now: left to the loop, its last decoded chunk would live on a while
    if over:
        chunks.clear()  # the error's traceback keeps this frame, which must not keep the bytes read
        chunk = b""
        raise _over_cap(where, *over)
    return b"".join(chunks)


async def _read_response(resp: httpx.Response, shown: str, tile: TileKey) -> FetchedTile | None | _Retry:
    """The tile in a streamed HTTP response, None for "no imagery here", or a _Retry; ImageryError otherwise."""
    status = resp.status_code
    where = _tile_name(tile, shown)
    if status == 200:
        body = await _read_body(resp, where)
        if not body:
            return None  # some servers answer "no tile here" with an empty 200
        try:
            pixels, valid = decode_with_valid(body, where, max_pixels=MAX_TILE_PIXELS)
        except ImageTooLargeError as exc:
            raise TileTooLargeError(str(exc)) from None  # the same bytes would come again: no retry
        except ImageError as exc:
            return _Retry(f"corrupt or truncated body ({exc})")
        ctype = resp.headers.get("content-type", "").split(";")[0].strip() or None
        return FetchedTile(data=body, content_type=ctype, pixels=pixels, valid=valid)
    if status in _EMPTY_STATUSES:
        return None
    if status in _RETRY_STATUSES or status >= 500:
        wait = parse_retry_after(resp.headers.get("retry-after")) if status == 429 else None
        return _Retry(f"HTTP {status}", None if wait is None else min(wait, MAX_RETRY_AFTER_S))
    z, x, y = tile
    raise ImageryError(f"{shown} (tile z={z} x={x} y={y}) answered HTTP {status}")


class XyzTileSource(TileSource):
    """Tiles from an HTTP server by URL template ({z}/{x}/{y}, {-y} TMS, {q} quadkey, {s} subdomains, {key})."""

    kind = "xyz"

    def __init__(
        self,
        template: str,
        *,
        cache: TileCache | None = None,
        capture_date: str | None = None,
        imagery_date: str | None = None,
        http: HttpOptions = HttpOptions(),
        subdomains: str | list[str] | None = None,
        min_zoom: int = 0,
        max_zoom: int = 22,
        attribution: str | None = None,
        name: str | None = None,
        base_id: str | None = None,
    ) -> None:
        """Check the template; no request is made until a tile is read (``http``: how tiles are fetched).

        ``base_id``: the undated id of a source whose template changes between its dates (Wayback's release in
        the path); by default the hash of the template."""
        super().__init__(cache=cache, capture_date=capture_date, imagery_date=imagery_date)
        self.template, inline = parse_template(template)
        self._dates = date_values(self.template, self._asked_date)
        self.subdomains = _resolve_subdomains(self.template, subdomains, inline)
        self.max_retries = int(http.max_retries)
        self.timeout_s = float(http.timeout_s)
        self.deadline_s = float(http.deadline_s)
        self.backoff_base_s = 0.5
        self.min_zoom, self.max_zoom = int(min_zoom), int(max_zoom)
        self.attribution = attribution

        header_values = dict(http.headers or {})
        self._key: str | None = _resolve_key(self.template, header_values, http.api_key_env)
        self.spec = name or redact_url(self.template)
        normalised = redact_url(self.template) + ("|s=" + "".join(self.subdomains) if self.subdomains else "")
        base_id = base_id or "xyz-" + spec_hash(normalised)
        send_headers = {"User-Agent": USER_AGENT, "Accept-Encoding": _ACCEPT_ENCODING}
        for k, v in header_values.items():
            send_headers[k] = v.replace("{key}", self._key) if self._key else v
        self._engine = _LoopThread(
            headers=send_headers,
            timeout_s=self.timeout_s,
            max_concurrency=int(http.max_concurrency),
            requests_per_s=float(http.requests_per_s),
        )
        self._register(base_id)

    # -- URLs ----------------------------------------------------------------------------------------
    def tile_url(self, z: int, x: int, y: int, *, with_secret: bool = False) -> str:
        """The request URL of a tile; the key placeholder is filled only when with_secret is set."""
        values = {"z": str(z), "x": str(x), "y": str(y), "-y": str(xyz_to_tms_y(z, y)), "r": "", **self._dates}
        if "{q}" in self.template:
            values["q"] = tile_to_quadkey(z, x, y)
        if self.subdomains:
            values["s"] = self.subdomains[(x + y) % len(self.subdomains)]
        if with_secret and self._key is not None:
            values["key"] = self._key
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), self.template)

    # -- fetching ------------------------------------------------------------------------------------
    def _fetch_tile(self, z: int, x: int, y: int) -> FetchedTile | None:
        return self._engine.submit(self._fetch_async(z, x, y)).result()

    async def _fetch_async(self, z: int, x: int, y: int) -> FetchedTile | None:
        """GET one tile with retries within its deadline; None for 404/204; ImageryError naming tile and URL."""
        url = self.tile_url(z, x, y, with_secret=True)
        shown = redact_url(self.tile_url(z, x, y))
        deadline = _Deadline(self.deadline_s)
        problem = "no attempt"
        for attempt in range(self.max_retries + 1):
            outcome = await self._attempt(url, shown, (z, x, y), deadline)
            if not isinstance(outcome, _Retry):
                return outcome
            problem = outcome.problem
            if attempt < self.max_retries:
                await self._wait_to_retry(outcome, attempt, deadline, _tile_name((z, x, y), shown))
        raise ImageryError(
            f"tile z={z} x={x} y={y} from {shown} failed after {self.max_retries + 1} attempts: {problem}"
        )

    async def _wait_to_retry(self, outcome: _Retry, attempt: int, deadline: _Deadline, where: str) -> None:
        """Sleep the server's Retry-After or a jittered backoff; fail now if that would pass the tile's deadline."""
        delay = outcome.delay
        if delay is None:
            backoff = min(self.backoff_base_s * 2**attempt, BACKOFF_CAP_S)
            delay = backoff * (0.5 + random.random() / 2)  # jitter: 50-100% of the backoff
        if delay >= deadline.left_s():
            raise self._late(where, f"{outcome.problem}, and the next try was due after {delay:g} s more")
        await asyncio.sleep(delay)

    def _late(self, where: str, why: str) -> ImageryError:
        return ImageryError(
            f"{where} was not complete within the {self.deadline_s:g} s deadline per tile, all tries and waits"
            f" included ({why}); run again to retry it"
        )

    async def _attempt(self, url: str, shown: str, tile: TileKey, deadline: _Deadline) -> FetchedTile | None | _Retry:
        """One throttled GET of a tile within what is left of its deadline: the tile, None or a _Retry."""
        engine = self._engine
        assert engine.semaphore is not None
        await engine.throttle()
        async with engine.semaphore:
            deadline.start()
            try:
                return await asyncio.wait_for(self._get(url, shown, tile), deadline.left_s())
            except TimeoutError:  # the deadline (httpx's own timeouts are not TimeoutError)
                raise self._late(_tile_name(tile, shown), "a very slow server") from None

    async def _get(self, url: str, shown: str, tile: TileKey) -> FetchedTile | None | _Retry:
        """Stream one GET and read it; transient network failures are a _Retry, the rest typed ImageryErrors."""
        client = self._engine.client
        assert client is not None
        where = _tile_name(tile, shown)
        try:
            async with client.stream("GET", url) as resp:
                return await _read_response(resp, shown, tile)
        except httpx.ConnectError as exc:
            z, x, y = tile
            raise UnreachableError(f"cannot connect to {shown} (tile z={z} x={x} y={y}): {exc}") from None
        except httpx.TimeoutException:
            return _Retry(f"timed out after {self.timeout_s:g} s")
        except httpx.TransportError as exc:
            return _Retry(f"connection failed ({type(exc).__name__}: {exc})")
        except httpx.TooManyRedirects:
            raise ImageryError(f"{where} redirects in a loop (over {client.max_redirects} redirects)") from None
        except httpx.DecodingError as exc:
            raise ImageryError(f"{where}: the body does not match its Content-Encoding ({exc})") from None
        except httpx.HTTPError as exc:
            raise ImageryError(f"{where}: {type(exc).__name__}: {exc}") from None

    def read_tiles(self, tiles: Iterable[TileKey]) -> Iterator[tuple[TileKey, TileRead]]:
        """Fetch tiles concurrently (cache hits first-hand), yielding results in completion order."""
        it = iter(tiles)
        pending: dict[concurrent.futures.Future, TileKey] = {}
        window = max(2 * self._engine.max_concurrency, 4)
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < window:
                    try:
                        t = next(it)
                    except StopIteration:
                        exhausted = True
                        break
                    key = tile_key(t)
                    check_tile(*key)
                    hit = self._from_cache(*key)
                    if hit is not _MISS:
                        yield key, hit  # type: ignore[misc]
                        continue
                    pending[self._engine.submit(self._fetch_async(*key))] = key
                if not pending:
                    return
                done, _ = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                for fut in done:
                    key = pending.pop(fut)
                    try:
                        result: TileRead = self._accept(key, fut.result())
                    except ImageryError as exc:
                        result = self._failed(exc)
                    yield key, result
        finally:
            for fut in pending:
                fut.cancel()

    def close(self) -> None:
        """Close the HTTP client and its loop thread."""
        self._engine.close()


def find_preset(name: str) -> Any | None:
    """The xyzservices TileProvider called name ('Esri.WorldImagery'), or None if no single preset has that name."""
    import xyzservices

    try:
        provider = xyzservices.providers.query_name(name)
    except (ValueError, KeyError, AttributeError):
        return None
    return provider if isinstance(provider, xyzservices.TileProvider) else None


def basemap_preset(name: str) -> Any:
    """The TileProvider a public page may draw as its basemap: InvalidInputError if unknown or it needs an API key."""
    provider = find_preset(name)
    if provider is None:
        raise InvalidInputError(
            f"basemap {name!r} is not an xyzservices preset (e.g. 'OpenStreetMap.Mapnik', 'Esri.WorldImagery', "
            "'OpenTopoMap')"
        )
    if provider.requires_token():
        raise InvalidInputError(
            f"basemap {name!r} needs an API key, which a public page would reveal: choose a preset without one"
        )
    return provider


def preset_source(name: str, **options: Any) -> XyzTileSource | None:
    """An XyzTileSource for an xyzservices preset name ('Esri.WorldImagery'), or None if unknown.

    ``options``: XyzTileSource's cache, dates and ``http``."""
    provider = find_preset(name)
    if provider is None:
        return None
    url = provider["url"]
    fill: dict[str, str] = {"r": ""}
    for k, v in provider.items():
        if k in ("url", "subdomains", "name") or not isinstance(v, (str, int, float)):
            continue
        text = str(v)
        if k in ("date", "time") and not text:
            continue  # left a placeholder, filled from the imagery date
        fill[k] = "{key}" if text.startswith("<insert") else text
    url = _PLACEHOLDER.sub(lambda m: fill.get(m.group(1), m.group(0)), url)
    subdomains = provider.get("subdomains")
    return XyzTileSource(
        url,
        subdomains=subdomains if subdomains and "{s}" in url else None,
        min_zoom=int(provider.get("min_zoom", 0)),
        max_zoom=int(provider.get("max_zoom", 19)),
        attribution=provider.get("attribution"),
        name=provider.name,
        **options,
    )


def search_presets(text: str | None = None) -> list[dict[str, Any]]:
    """xyzservices presets whose name contains text (case-insensitive): name, url, max_zoom, needs_key."""
    import xyzservices

    flat = xyzservices.providers.flatten()
    out = []
    needle = (text or "").lower()
    for name in sorted(flat):
        p = flat[name]
        if needle and needle not in name.lower():
            continue
        out.append(
            {
                "name": name,
                "url": p.get("url"),
                "max_zoom": p.get("max_zoom"),
                "needs_key": bool(p.requires_token()),
            }
        )
    return out
