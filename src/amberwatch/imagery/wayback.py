"""Esri World Imagery Wayback: the release list, one release as an XYZ source, per-tile capture dates, local changes.

The release list is Esri's public Wayback config JSON (an object keyed by release number; each release has
``itemTitle`` "World Imagery (Wayback YYYY-MM-DD)", ``itemURL`` a tile template with ``{level}/{row}/{col}`` and
the release number in its path, and ``metadataLayerUrl``). It is fetched once per config URL and kept in the tile
cache (table ``source_documents``); a release asked for that the kept copy lacks fetches it again once (a newer
release). The URL is ``AMBERWATCH_WAYBACK_CONFIG_URL``, by default Esri's public one.

A release is read through ``XyzTileSource`` (same HTTP options, retries, cache) with the id
``wayback-<hash of the config URL>@<release date>``. Each fetched tile's capture date comes from the release's
metadata layer (a point query at the tile centre, field ``SRC_DATE2``, ms since 1970; older layers ``SRC_DATE``,
YYYYMMDD) and is cached with the tile; a failed metadata query leaves the tile undated, never fails it.

Local changes (``local_changes``) follow the Wayback apps: for a few sample tiles of the AOI, the service's
``tilemap/{release}/{level}/{row}/{col}`` endpoint names the release that last changed the tile at or before a
release (``select``), walked from the newest release back; candidates whose tile equals the older one's are dropped.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import httpx

from amberwatch.errors import ImageryError, InvalidInputError, UnreachableError
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.sources import FetchedTile, TileKey, spec_hash
from amberwatch.imagery.tiles import lnglat_to_tile, tile_center_lnglat
from amberwatch.imagery.types import FULL_DATE_FORM
from amberwatch.imagery.xyz import USER_AGENT, HttpOptions, XyzTileSource

if TYPE_CHECKING:
    from amberwatch.imagery.aoi import AOI

DEFAULT_CONFIG_URL = "https://s3-us-west-2.amazonaws.com/config.maptiles.arcgis.com/waybackconfig.json"
CONFIG_URL_ENV = "AMBERWATCH_WAYBACK_CONFIG_URL"
SPEC_PREFIX = "wayback:"
MAX_CONFIG_BYTES = 16 * 2**20  # the real list is a few hundred KB
MAX_SAMPLE_TILES = 9  # tiles of an AOI asked about local changes (a 3 x 3 grid over its bounds)
METADATA_MAX_ZOOM, METADATA_MIN_ZOOM = 23, 10  # metadata sublayer 0 is zoom 23 ... sublayer 13 is zoom 10 and below
ATTRIBUTION = "Esri World Imagery Wayback: Esri, Maxar, Earthstar Geographics, and the GIS User Community"
_TITLE_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})")


@dataclass(frozen=True)
class WaybackRelease:
    """One Wayback release: its number, release date (YYYY-MM-DD), tile template and metadata layer."""

    number: int
    release_date: str
    title: str
    item_url: str
    metadata_url: str | None = None

    @property
    def template(self) -> str:
        """The tile template in XYZ placeholders."""
        return self.item_url.replace("{level}", "{z}").replace("{row}", "{y}").replace("{col}", "{x}")

    @property
    def spec(self) -> str:
        """The imagery spec naming this release."""
        return f"{SPEC_PREFIX}{self.release_date}"

    def tilemap_url(self, z: int, x: int, y: int) -> str | None:
        """The service's tilemap URL for a tile at this release, None when the tile URL is not a WMTS one."""
        base, sep, _ = self.item_url.partition("/WMTS/")
        return f"{base}/MapServer/tilemap/{self.number}/{z}/{y}/{x}" if sep else None


def config_url() -> str:
    """The Wayback config URL: ``AMBERWATCH_WAYBACK_CONFIG_URL`` or Esri's public one."""
    return os.environ.get(CONFIG_URL_ENV, "").strip() or DEFAULT_CONFIG_URL


def _get_json(client: httpx.Client, url: str, what: str) -> Any:
    """GET a JSON document of at most MAX_CONFIG_BYTES, parsed; one-line typed errors naming the URL."""
    return _parse_json(_get_body(client, url, what), url, what)


def _get_body(client: httpx.Client, url: str, what: str) -> bytes:
    """GET a document of at most MAX_CONFIG_BYTES; one-line typed errors naming the URL."""
    try:
        with client.stream("GET", url) as resp:
            if resp.status_code != 200:
                raise ImageryError(f"{what} at {url} answered HTTP {resp.status_code}")
            body = bytearray()
            for chunk in resp.iter_bytes():
                body += chunk
                if len(body) > MAX_CONFIG_BYTES:
                    raise ImageryError(f"{what} at {url} is over {MAX_CONFIG_BYTES // 2**20} MiB: not a Wayback file")
    except httpx.HTTPError as exc:
        raise UnreachableError(f"cannot fetch {what} from {url}: {type(exc).__name__}: {exc}") from None
    return bytes(body)


def _parse_json(body: bytes, url: str, what: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImageryError(f"{what} at {url} is not valid JSON ({exc})") from None


def _client(timeout_s: float = 20.0) -> httpx.Client:
    return httpx.Client(timeout=timeout_s, follow_redirects=True, headers={"User-Agent": USER_AGENT})


def _release(key: str, item: object, url: str) -> WaybackRelease:
    """One config entry as a WaybackRelease; ImageryError naming the URL and key when it is not in the format."""
    where = f"the Wayback config at {url}, release {key!r}"
    if not (isinstance(item, dict) and str(key).isdigit()):
        raise ImageryError(f"{where}: not a release number with an object")
    title, item_url = item.get("itemTitle"), item.get("itemURL")
    found = _TITLE_DATE.search(title) if isinstance(title, str) else None
    if found is None:
        raise ImageryError(f"{where}: itemTitle {title!r} has no date YYYY-MM-DD")
    if not (isinstance(item_url, str) and all(p in item_url for p in ("{level}", "{row}", "{col}"))):
        raise ImageryError(f"{where}: itemURL {item_url!r} is not a tile template with {{level}}/{{row}}/{{col}}")
    meta = item.get("metadataLayerUrl")
    return WaybackRelease(int(key), found.group(1), title, item_url, meta if isinstance(meta, str) and meta else None)


def parse_config(body: bytes, url: str) -> list[WaybackRelease]:
    """The releases of a Wayback config JSON, oldest first; ImageryError naming the URL when malformed."""
    data = _parse_json(body, url, "the Wayback config")
    if not isinstance(data, dict) or not data:
        raise ImageryError(f"the Wayback config at {url} is not an object of releases keyed by release number")
    return sorted((_release(k, v, url) for k, v in data.items()), key=lambda r: (r.release_date, r.number))


def load_releases(cache: TileCache | None, *, url: str | None = None, refresh: bool = False) -> list[WaybackRelease]:
    """The Wayback releases, oldest first: the copy kept in the tile cache, else fetched (and kept)."""
    url = url or config_url()
    kept = None if refresh or cache is None else cache.get_document(url)
    if kept is not None:
        return parse_config(kept, url)
    with _client() as client:
        body = _get_body(client, url, "the Wayback config")
    releases = parse_config(body, url)
    if cache is not None:
        cache.put_document(url, body)
    return releases


def _nearest(releases: list[WaybackRelease], text: str) -> str:
    """The two releases nearest a date or number, for an error message."""
    if text.isdigit():
        ranked = sorted(releases, key=lambda r: abs(r.number - int(text)))
    else:
        day = date.fromisoformat(text)
        ranked = sorted(releases, key=lambda r: abs((date.fromisoformat(r.release_date) - day).days))
    return ", ".join(f"{r.release_date} (release {r.number})" for r in sorted(ranked[:2], key=lambda r: r.number))


def find_release(releases: list[WaybackRelease], text: str) -> WaybackRelease:
    """The release named by a release date (YYYY-MM-DD) or number; InvalidInputError naming it and the nearest."""
    text = text.strip()
    if not (text.isdigit() or FULL_DATE_FORM.match(text)):
        raise InvalidInputError(f"Wayback release {text!r} is neither a release date YYYY-MM-DD nor a release number")
    if not text.isdigit():
        try:
            date.fromisoformat(text)
        except ValueError:
            raise InvalidInputError(f"Wayback release date {text!r} is not a real date") from None
    for r in releases:
        if (text.isdigit() and r.number == int(text)) or r.release_date == text:
            return r
    kind = "number" if text.isdigit() else "date"
    nearest = f"; nearest: {_nearest(releases, text)}" if releases else ""
    raise InvalidInputError(f"no Wayback release with {kind} {text}{nearest} (see 'amberwatch imagery releases')")


def resolve_release(text: str, cache: TileCache | None) -> WaybackRelease:
    """The release named by ``text``; a release the kept list lacks fetches the list again once (a newer one)."""
    releases = load_releases(cache)
    try:
        return find_release(releases, text)
    except InvalidInputError:
        if cache is None or not _could_be_newer(releases, text):
            raise
    with contextlib.suppress(ImageryError):  # offline: the kept list stands, and the release is not in it
        releases = load_releases(cache, refresh=True)
    return find_release(releases, text)


def _could_be_newer(releases: list[WaybackRelease], text: str) -> bool:
    """True when a release named ``text`` could have been published after the kept list was fetched."""
    text = text.strip()
    if text.isdigit():
        return int(text) > max((r.number for r in releases), default=0)
    return bool(FULL_DATE_FORM.match(text)) and text > max((r.release_date for r in releases), default="")


def _epoch_ms_date(value: object) -> str | None:
    try:
        return datetime.fromtimestamp(float(value) / 1000.0, tz=UTC).date().isoformat()  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _yyyymmdd_date(value: object) -> str | None:
    text = str(value).strip()
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8])).isoformat() if len(text) == 8 else None
    except ValueError:
        return None


def capture_date_of(answer: object) -> str | None:
    """The capture date (YYYY-MM-DD) in a metadata layer's query answer: SRC_DATE2 (ms) or SRC_DATE (YYYYMMDD)."""
    features = answer.get("features") if isinstance(answer, dict) else None
    if not (isinstance(features, list) and features and isinstance(features[0], dict)):
        return None
    attributes = features[0].get("attributes")
    if not isinstance(attributes, dict):
        return None
    if attributes.get("SRC_DATE2") is not None:
        return _epoch_ms_date(attributes["SRC_DATE2"])
    return None if attributes.get("SRC_DATE") is None else _yyyymmdd_date(attributes["SRC_DATE"])


def metadata_query(metadata_url: str, z: int, x: int, y: int) -> tuple[str, dict[str, str]]:
    """(URL, query parameters) asking a release's metadata layer about the imagery at a tile's centre."""
    layer = METADATA_MAX_ZOOM - max(METADATA_MIN_ZOOM, min(METADATA_MAX_ZOOM, z))
    lon, lat = tile_center_lnglat(z, x, y)
    point = {"spatialReference": {"wkid": 4326}, "x": lon, "y": lat}
    params = {
        "f": "json",
        "where": "1=1",
        "outFields": "SRC_DATE2,SRC_DATE,NICE_DESC,SRC_DESC,SAMP_RES,SRC_ACC",
        "geometry": json.dumps(point, separators=(",", ":")),
        "geometryType": "esriGeometryPoint",
        "spatialRel": "esriSpatialRelIntersects",
        "returnGeometry": "false",
    }
    return f"{metadata_url.rstrip('/')}/{layer}/query", params


class WaybackTileSource(XyzTileSource):
    """One Wayback release as an XYZ source whose tiles carry their capture dates from its metadata layer."""

    kind = "wayback"

    def __init__(
        self,
        release: WaybackRelease,
        *,
        config: str,
        cache: TileCache | None = None,
        capture_date: str | None = None,
        http: HttpOptions = HttpOptions(),
    ) -> None:
        """The release's tiles, with the source id ``wayback-<config hash>@<release date>``."""
        self.release = release
        super().__init__(
            release.template,
            cache=cache,
            capture_date=capture_date,
            imagery_date=release.release_date,
            http=http,
            max_zoom=METADATA_MAX_ZOOM,
            attribution=ATTRIBUTION,
            name=release.spec,
            base_id="wayback-" + spec_hash(config),
        )

    async def _fetch_async(self, z: int, x: int, y: int) -> FetchedTile | None:
        tile = await super()._fetch_async(z, x, y)
        if tile is not None and tile.capture_date is None and self.release.metadata_url:
            tile.capture_date = await self._capture_date(z, x, y)
        return tile

    async def _capture_date(self, z: int, x: int, y: int) -> str | None:
        """The capture date the metadata layer gives at the tile's centre; None when it gives none or fails."""
        engine = self._engine
        assert self.release.metadata_url is not None and engine.client is not None and engine.semaphore is not None
        url, params = metadata_query(self.release.metadata_url, z, x, y)
        await engine.throttle()
        async with engine.semaphore:
            try:
                resp = await engine.client.get(url, params=params)
                return capture_date_of(resp.json()) if resp.status_code == 200 else None
            except (httpx.HTTPError, ValueError):
                return None


def open_wayback(
    text: str,
    *,
    cache: TileCache | None = None,
    http: HttpOptions = HttpOptions(),
    capture_date: str | None = None,
    imagery_date: str | None = None,
) -> WaybackTileSource:
    """Open ``wayback:<release date or number>`` (``text`` is what follows the prefix)."""
    if imagery_date is not None:
        raise InvalidInputError(
            f"Wayback imagery is dated by its release: give it as --imagery wayback:DATE|NUMBER, not with imagery"
            f" date {imagery_date!r}"
        )
    if not text.strip():
        raise InvalidInputError("imagery spec 'wayback:' names no release: wayback:YYYY-MM-DD or wayback:NUMBER")
    release = resolve_release(text, cache)
    return WaybackTileSource(release, config=config_url(), cache=cache, capture_date=capture_date, http=http)


@dataclass(frozen=True)
class LocalChange:
    """A release whose imagery changed over an AOI: how many of the sample tiles, and their capture dates."""

    release: WaybackRelease
    tiles_changed: int
    capture_dates: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        """A plain dict for --json."""
        r = self.release
        return {
            "release": r.number,
            "date": r.release_date,
            "title": r.title,
            "spec": r.spec,
            "tiles_changed": self.tiles_changed,
            "capture_dates": list(self.capture_dates),
        }


def sample_tiles(aoi: AOI, zoom: int, limit: int = MAX_SAMPLE_TILES) -> list[TileKey]:
    """Up to ``limit`` tiles of the AOI: a 3 x 3 grid of points over its bounds inside it, and a point surely in it."""
    from shapely.geometry import Point

    west, south, east, north = aoi.bounds_deg
    point = aoi.geometry.representative_point()
    points = [(point.x, point.y)]
    for fy in (0.5, 1 / 6, 5 / 6):
        for fx in (0.5, 1 / 6, 5 / 6):
            lon, lat = west + fx * (east - west), south + fy * (north - south)
            if aoi.geometry.covers(Point(lon, lat)):
                points.append((lon, lat))
    tiles: list[TileKey] = []
    for lon, lat in points:
        tile = lnglat_to_tile(lon, lat, zoom)
        if tile not in tiles:
            tiles.append(tile)
    return tiles[:limit]


def _tilemap(client: httpx.Client, release: WaybackRelease, tile: TileKey) -> int | None:
    """The release that last changed ``tile`` at or before ``release`` (tilemap ``select``), None: no tile there."""
    url = release.tilemap_url(tile[0], tile[1], tile[2])
    if url is None:
        raise ImageryError(f"Wayback release {release.number}: tile URL {release.item_url} has no WMTS tilemap")
    answer = _get_json(client, url, "the Wayback tilemap")
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list):
        raise ImageryError(f"the Wayback tilemap at {url} has no 'data' list")
    if not (data and data[0]):
        return None
    select = answer.get("select")
    return int(select[0]) if isinstance(select, list) and select and str(select[0]).isdigit() else release.number


def _candidates(client: httpx.Client, releases: list[WaybackRelease], tile: TileKey) -> list[WaybackRelease]:
    """The releases that changed ``tile``, oldest first, walking the tilemap from the newest release back."""
    newest_first = releases[::-1]
    index = {r.number: i for i, r in enumerate(newest_first)}
    found: list[WaybackRelease] = []
    i = 0
    while i < len(newest_first):  # one request per change found, plus one: bounded by the number of releases
        chosen = _tilemap(client, newest_first[i], tile)
        if chosen is None or chosen not in index:
            break
        found.append(newest_first[index[chosen]])
        i = max(index[chosen], i) + 1
    return found[::-1]


def _changes_at(
    tile: TileKey, candidates: list[WaybackRelease], cache: TileCache | None, http: HttpOptions
) -> Iterator[tuple[WaybackRelease, str | None]]:
    """(release, capture date) of the candidates whose tile differs from the previous one's (the first counts)."""
    previous = None
    for release in candidates:
        with WaybackTileSource(release, config=config_url(), cache=cache, http=http) as source:
            image = source.read_tile(*tile)
        pixels = None if image is None else image.pixels
        same = (pixels is None and previous is None) or (
            pixels is not None and previous is not None and (pixels == previous).all()
        )
        if not same:
            yield release, None if image is None or image.capture_date is None else image.capture_date.isoformat()
        previous = pixels


def local_changes(
    aoi: AOI, zoom: int, *, cache: TileCache | None = None, http: HttpOptions = HttpOptions(), refresh: bool = False
) -> tuple[list[LocalChange], int]:
    """The releases whose imagery changed over sample tiles of the AOI (oldest first), and how many were sampled."""
    releases = load_releases(cache, refresh=refresh)
    tiles = sample_tiles(aoi, zoom)
    changed: dict[int, list[str | None]] = {}
    with _client(http.timeout_s) as client:
        for tile in tiles:
            for release, when in _changes_at(tile, _candidates(client, releases, tile), cache, http):
                changed.setdefault(release.number, []).append(when)
    out = [
        LocalChange(r, len(changed[r.number]), tuple(sorted({d for d in changed[r.number] if d})))
        for r in releases
        if r.number in changed
    ]
    return out, len(tiles)


def changes_text(changes: list[LocalChange]) -> str:
    """One line per release for the terminal."""
    lines = []
    for c in changes:
        dates = ", ".join(c.capture_dates) or "unknown"
        lines.append(
            f"{c.release.release_date}  release {c.release.number:<6} {c.tiles_changed} sample tile(s) changed, "
            f"captured {dates}  ({c.release.spec})"
        )
    return "\n".join(lines)
