"""Build the static story folder: index.html, data.js, assets (own + Leaflet), fragment images, map tiles."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import sqlite3
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from amberwatch.db import writing
from amberwatch.errors import AmberwatchWarning, InvalidInputError, NotFoundError
from amberwatch.imagery.basemap import tile_origins
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.leaflet import copy_leaflet
from amberwatch.imagery.mosaic import open_cached_source
from amberwatch.imagery.sources import TileSource
from amberwatch.imagery.types import LngLatBbox
from amberwatch.project import Project, tile_cache_path
from amberwatch.results.locator import locator_svg, union_bbox
from amberwatch.results.public import NO_CREDIT, PublicDetection, imagery_credit
from amberwatch.results.store import SCHEMA as RESULTS_SCHEMA
from amberwatch.results.store import get_scan
from amberwatch.results.timeline import DEFAULT_REL_TOLERANCE
from amberwatch.story.article import Article, read_article
from amberwatch.story.captions import (
    SiteText,
    format_date,
    format_hectares,
    format_place,
    headline_text,
    pair_text,
    plural,
    site_texts,
)
from amberwatch.story.change import ChangeChoice, StoryChange, load_change
from amberwatch.story.context import place_labels
from amberwatch.story.images import (
    export_tiles,
    fragment_bbox,
    grow_bbox,
    multipolygon,
    pair_bbox,
    write_fragment,
    write_pair_image,
)
from amberwatch.story.page import ChangeSection, Fragment, Pair, index_html
from amberwatch.story.selection import pick_scan, select_fragments, select_map_sites

OWN_ASSETS = ("story.css", "story.js")
OUTPUT_SUBDIRS = ("assets", "fragments", "tiles")
MAX_FLYING_CLONES = 24
SITE_ZOOM = 17.0
MAP_MAX_ZOOM = 20


@dataclass(frozen=True)
class StoryBuild:
    """What a build wrote: the page, the fragment count by image origin and the map tiles."""

    index_html: Path
    scan_id: int | None
    fragment_ids: tuple[int, ...]
    fragment_origins: dict[str, int]
    n_map_sites: int
    n_tiles: int
    basemap: str | None = None  # the online basemap's preset name; None: the page loads nothing from outside
    pair_ids: tuple[int, ...] = ()  # the then-and-now pairs, by the detection the map flies to
    headline: str | None = None  # "N new sites, X ha dug since DATE"; None for a story without change over time


@dataclass(frozen=True)
class Chosen:
    """What the DB gives a story: the map's scan, fragment and map sites, imagery credits by scan id."""

    scan_id: int | None
    sites: list[PublicDetection]
    map_sites: list[PublicDetection]
    credits: dict[int, str | None]  # None: the scan names no imagery provider
    change: StoryChange | None = None


def build_story(
    article_path: str | os.PathLike[str],
    db_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    scan_id: int | None = None,
    cache_path: str | os.PathLike[str] | None = None,
    change: ChangeChoice | None = None,
    map_url: str | None = None,
) -> StoryBuild:
    """Build the static story page for an article from the detections in a project DB (a full disk under the
    folder is a StorageFullError naming it). A project scanned at two or more imagery dates also gets then-and-now
    pairs and headline figures (``change``: the dates and sites; undated projects: the page as without).
    ``map_url``: the live map the page links to (http or https)."""
    url = check_map_url(map_url)
    with writing(out_dir, "story folder"):
        return _build(article_path, db_path, out_dir, scan_id, cache_path, change or ChangeChoice(), url)


def check_map_url(url: str | None) -> str | None:
    """The live map's address as given, or None; an InvalidInputError naming anything but an http(s) URL."""
    if not url:
        return None
    if not re.match(r"^https?://[^\s/?#\"'<>]+[^\s\"'<>]*$", url, re.IGNORECASE):
        raise InvalidInputError(f"map URL {url!r} is not an http:// or https:// address")
    return url


def _build(
    article_path, db_path, out_dir, scan_id: int | None, cache_path, change: ChangeChoice, map_url: str | None
) -> StoryBuild:
    """The body of build_story."""
    article = replace(read_article(article_path), map_url=map_url)
    db = Path(db_path)
    chosen = _select_sites(db, article, scan_id, change)
    _warn_unconfirmed(chosen.sites, chosen.map_sites)
    cache_file = _cache_file(db, cache_path)
    out = Path(out_dir)
    _prepare_out_dir(out)
    paired = chosen.change.detections() if chosen.change else []
    texts = site_texts(list({s.id: s for s in [*chosen.sites, *chosen.map_sites, *paired]}.values()), article.places)
    cache = _open_cache(cache_file)
    sources: dict[str, TileSource] = {}
    try:
        fragments = _write_fragments(chosen.sites, texts, cache, sources, out)
        section = _write_pairs(chosen.change, texts, cache, sources, out)
        tiles, credit = _write_tiles(fragments, cache, sources, out, chosen.credits)
    finally:
        for src in sources.values():
            src.close()
        if cache is not None:
            cache.close()
    _copy_assets(out)
    index = _write_page(out, article, chosen, fragments, section, texts, tiles, credit)
    origins: dict[str, int] = {}
    for f in fragments:
        origins[f.image.origin] = origins.get(f.image.origin, 0) + 1
    return StoryBuild(
        index_html=index,
        scan_id=chosen.scan_id,
        fragment_ids=tuple(f.site.id for f in fragments),
        fragment_origins=origins,
        n_map_sites=len(chosen.map_sites),
        n_tiles=sum(len(v) for v in tiles.values()),
        basemap=article.basemap.name if article.basemap is not None else None,
        pair_ids=tuple(p.site.id for p in section.pairs) if section is not None else (),
        headline=section.headline if section is not None else None,
    )


def _write_page(
    out: Path,
    article: Article,
    chosen: Chosen,
    fragments: list[Fragment],
    section: ChangeSection | None,
    texts: dict[int, SiteText],
    tiles: dict[int, list[tuple[int, int]]],
    credit: str | None,
) -> Path:
    """Write data.js, index.html and assets/layout.css; refuse a folder that would load external URLs."""
    pairs = [_pair_fragment(p) for p in section.pairs] if section is not None else []
    shown = {f.site.id for f in fragments}
    on_map = [*fragments, *(f for f in pairs if f.site.id not in shown)]
    places = place_labels([*chosen.map_sites, *(f.site for f in on_map)])
    data = _without_schemes(_data_js(article, on_map, chosen.map_sites, texts, tiles, credit, places), article)
    (out / "data.js").write_text(_with_basemap(data, article), "utf-8")
    index = out / "index.html"
    n_others = len({s.id for s in chosen.map_sites} - {f.site.id for f in on_map})
    scans = [*(f.site.scan_id for f in fragments), *_change_scan_ids(chosen.change)]
    credits = [imagery_credit_text(chosen.credits[i]) for i in scans]
    allowed = (article.basemap.url, *tile_origins(article.basemap)) if article.basemap is not None else ()
    allowed += (article.map_url, html.escape(article.map_url)) if article.map_url else ()  # a link, never loaded
    extent = union_bbox(s.bbox for s in (*chosen.map_sites, *(f.site for f in on_map)))
    locator = locator_svg(extent, svg_id="story-locator")
    page = index_html(article, fragments, n_others, credits, section, locator)
    index.write_text(_without_schemes(page.html, article, keep=allowed), "utf-8")
    (out / "assets" / "layout.css").write_text(page.layout_css, "utf-8")
    leftovers = find_external_urls(out, allowed=allowed)
    if leftovers:
        raise InvalidInputError(f"story folder {str(out)!r} would load external URLs: {leftovers[:3]}")
    return index


def _change_scan_ids(change: StoryChange | None) -> tuple[int, ...]:
    return (change.then_scan.id, change.now_scan.id) if change is not None else ()


def _pair_fragment(p: Pair) -> Fragment:
    """A pair as the map knows it: its NOW image over the site, its caption and alt text."""
    return Fragment(p.site, p.now_image, SiteText(p.place, "", None, "", "", p.text.caption, p.text.now_alt))


def _warn_unconfirmed(sites: list[PublicDetection], map_sites: list[PublicDetection]) -> None:
    """Say how many published sites no reviewer has confirmed (sites reviewed as not mining are already out)."""
    shown = {s.id: s for s in [*sites, *map_sites]}
    unconfirmed = sum(not s.confirmed for s in shown.values())
    if unconfirmed:
        warnings.warn(
            AmberwatchWarning(
                f"{unconfirmed} of the {plural(len(shown), 'site')} in the story are not confirmed by a reviewer "
                f"({sum(not s.confirmed for s in sites)} of the {plural(len(sites), 'fragment')}): confirm them on "
                "/review?tab=unreviewed first"
            ),
            stacklevel=3,  # blame build_story's caller
        )


def _select_sites(db: Path, article: Article, scan_id: int | None, change_choice: ChangeChoice) -> Chosen:
    """The scan shown on the map, fragment sites, map sites, change over time and the imagery credits, read from
    the project DB (the pairs' sites are on the map too)."""
    with Project.open(db, create=False) as project:
        project.migrate(RESULTS_SCHEMA)
        conn = project.conn
        if article.fragments.ids and scan_id is None:
            # Explicit ids name their detections in any scan; the map shows their scan when they share one.
            sites = select_fragments(conn, article.fragments, None)
            scan_ids = {s.scan_id for s in sites}
            scan = scan_ids.pop() if len(scan_ids) == 1 else None
        else:
            scan = pick_scan(conn, scan_id)
            sites = select_fragments(conn, article.fragments, scan)
        change = load_change(conn, scan, change_choice)
        map_sites = select_map_sites(conn, scan)
        on_map = {s.id for s in map_sites}
        paired = [d for p in (change.pairs if change else ()) for d in p.now_detections if d.id not in on_map]
        scan_ids = {s.scan_id for s in sites} | set(_change_scan_ids(change))
        return Chosen(scan, sites, [*map_sites, *paired], _credits(conn, scan_ids), change)


def _credits(conn: sqlite3.Connection, scan_ids: set[int]) -> dict[int, str | None]:
    """The imagery credit of each scan (``results.public.imagery_credit``), None and a warning for a scan that
    names no provider."""
    out: dict[int, str | None] = {}
    for sid in sorted(scan_ids):
        scan = get_scan(conn, sid)
        credit = imagery_credit(scan.imagery, scan.params, "")
        out[sid] = None if credit == NO_CREDIT else credit
        if out[sid] is None:
            warnings.warn(
                AmberwatchWarning(
                    f"scan {sid} names no imagery provider: the story says 'Imagery: {UNKNOWN_PROVIDER}'; a "
                    "published story needs a credit (scan --imagery-credit TEXT, or an xyzservices preset)"
                ),
                stacklevel=5,  # blame build_story's caller
            )
    return out


def _cache_file(db: Path, cache_path: str | os.PathLike[str] | None) -> Path:
    cache_file = Path(cache_path) if cache_path else tile_cache_path(db)
    if cache_path and not cache_file.exists():
        raise NotFoundError(f"tile cache {str(cache_file)!r} does not exist")
    return cache_file


def _open_cache(cache_file: Path) -> TileCache | None:
    if cache_file.exists():
        return TileCache(cache_file)
    warnings.warn(
        AmberwatchWarning(f"no tile cache at {str(cache_file)!r}: fragments come from detection thumbnails"),
        stacklevel=3,  # blame build_story's caller
    )
    return None


def _copy_assets(out: Path) -> None:
    copy_leaflet(out / "assets" / "leaflet")
    for name in OWN_ASSETS:
        (out / "assets" / name).write_bytes(resources.files("amberwatch.story").joinpath("assets", name).read_bytes())


def _without_schemes(text: str, article: Article, keep: Sequence[str] = ()) -> str:
    """Drop 'http(s)://' left in front matter texts (title, byline, places): the page stays self-contained.
    Addresses starting with one of ``keep`` (the basemap's tile origins in the CSP) stay."""
    starts = [m.start() for m in EXTERNAL_URL_RE.finditer(text)]
    dropped = {i for i in starts if not any(text.startswith(k, i) for k in keep)}
    if not dropped:
        return text
    warnings.warn(
        AmberwatchWarning(f"article {str(article.path)!r}: front matter addresses shown without 'http(s)://'"),
        stacklevel=3,
    )
    return EXTERNAL_URL_RE.sub(lambda m: "" if m.start() in dropped else m.group(0), text)


def _prepare_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"output {str(out)!r} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    for sub in OUTPUT_SUBDIRS:
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir()


def _source(cache: TileCache | None, sources: dict[str, TileSource], source_id: str) -> TileSource | None:
    if cache is None:
        return None
    if source_id not in sources:
        sources[source_id] = open_cached_source(cache, source_id)
    return sources[source_id]


def _write_fragments(
    sites: list[PublicDetection],
    texts: dict[int, SiteText],
    cache: TileCache | None,
    sources: dict[str, TileSource],
    out: Path,
) -> list[Fragment]:
    fragments: list[Fragment] = []
    for site in sites:
        source = _source(cache, sources, site.imagery_source_id)
        image = write_fragment(site, source, out / "fragments", "fragments")
        fragments.append(Fragment(site, image, texts[site.id]))
    return fragments


def _write_pairs(
    change: StoryChange | None,
    texts: dict[int, SiteText],
    cache: TileCache | None,
    sources: dict[str, TileSource],
    out: Path,
) -> ChangeSection | None:
    """The then-and-now section: the headline figures and each pair's two images, cut from one box."""
    if change is None:
        return None
    h = change.headline
    section = ChangeSection(headline_text(h.n_new, h.dug_ha, h.then), change_rule(h.then, h.now), ())
    if cache is None:
        return section  # no imagery to show: the figures only (the missing cache is warned about already)
    then_source = _source(cache, sources, change.then_scan.imagery_source_id)
    now_source = _source(cache, sources, change.now_scan.imagery_source_id)
    assert then_source is not None and now_source is not None
    pairs = []
    for p in change.pairs:
        shown = p.now_detections or p.then_detections
        site = shown[0]
        box = pair_bbox([d.bbox for d in (*p.then_detections, *p.now_detections)], site.centroid_lat)
        outline = multipolygon(d.geometry for d in p.now_detections) if p.now_detections else None
        stem = f"pair-{p.change.site.site_id}"
        then_img = write_pair_image(then_source, box, change.then_scan.zoom, None, out / "fragments", f"{stem}-then")
        now_img = write_pair_image(now_source, box, change.now_scan.zoom, outline, out / "fragments", f"{stem}-now")
        c = p.change
        text = pair_text(texts[site.id], h.then, h.now, c.then_ha, c.now_ha, c.kind)
        pairs.append(Pair(site, then_img, now_img, text, texts[site.id].place))
    return replace(section, pairs=tuple(pairs))


def change_rule(then: str, now: str) -> str:
    """The methods note's rule for the headline figures."""
    return (
        f"Change over time compares the imagery of {format_date(then)} with that of {format_date(now)}; sites are "
        "matched across the dates where their outlines overlap. A site is new when its place had imagery on the "
        "earlier date and nothing was found there; hectares dug are the area of the new sites plus the growth of "
        f"the sites that grew by more than {DEFAULT_REL_TOLERANCE:.0%}. Sites without imagery at either date are left "
        "out, as are sites reviewers found not mining. Totals are rounded like the map's."
    )


def _write_tiles(
    fragments: list[Fragment],
    cache: TileCache | None,
    sources: dict[str, TileSource],
    out: Path,
    credits: dict[int, str | None],
) -> tuple[dict[int, list[tuple[int, int]]], str | None]:
    """The map's exported tiles {z: [(x, y)]} and the credit of their imagery."""
    if cache is None or not fragments:
        return {}, None
    by_source: dict[tuple[str, int], list[Fragment]] = {}
    for f in fragments:
        by_source.setdefault((f.site.imagery_source_id, f.site.zoom), []).append(f)
    # One exported tile set per page: the source with the most fragments (a story is told from one scan).
    (source_id, zoom), chosen = max(by_source.items(), key=lambda kv: len(kv[1]))
    source = _source(cache, sources, source_id)
    assert source is not None
    areas = [grow_bbox(fragment_bbox(f.site), 1.0) for f in chosen]
    written: dict[int, list[tuple[int, int]]] = {}
    for z, xs in export_tiles(source, areas, zoom, out / "tiles").items():
        written.setdefault(z, []).extend(xs)
    return written, imagery_credit_text(credits.get(chosen[0].site.scan_id))


UNKNOWN_PROVIDER = "provider not stated"  # the map says "imagery provider not stated"


def imagery_credit_text(credit: str | None) -> str:
    """A scan's credit without a leading 'Imagery:' (the page adds it once); UNKNOWN_PROVIDER for None."""
    text = re.sub(r"^\s*imagery\s*:\s*", "", credit or "", flags=re.IGNORECASE).strip()
    return text or UNKNOWN_PROVIDER


def _bounds_latlng(b: LngLatBbox) -> list[list[float]]:
    return [[round(b.south_deg, 7), round(b.west_deg, 7)], [round(b.north_deg, 7), round(b.east_deg, 7)]]


def _round_coords(value: object) -> object:
    if isinstance(value, float):
        return round(value, 7)
    if isinstance(value, list):
        return [_round_coords(v) for v in value]
    return value


def _site_features(map_sites: list[PublicDetection], texts: dict[int, SiteText]) -> list[dict]:
    """GeoJSON features of the map sites, captioned like their fragments."""
    features = []
    for s in map_sites:
        geometry = {"type": s.geometry.get("type"), "coordinates": _round_coords(s.geometry.get("coordinates"))}
        props = {"caption": texts[s.id].caption}
        features.append({"type": "Feature", "id": s.id, "geometry": geometry, "properties": props})
    return features


def _fragment_entry(f: Fragment) -> dict:
    return {
        "id": f.site.id,
        "center": [round(f.site.centroid_lat, 7), round(f.site.centroid_lon, 7)],
        "zoom": SITE_ZOOM,
        "siteBounds": _bounds_latlng(f.site.bbox),
        "bounds": _bounds_latlng(f.image.bbox) if f.image.bbox is not None else None,
        "overlay": f.image.files[-1][1],
        "caption": f.text.caption,
        "alt": f.text.alt,
    }


def _json(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    # Inline data must not close the script or contain a line separator that old JS engines reject.
    return text.replace("</", "<\\/").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _data_js(
    article: Article,
    fragments: list[Fragment],
    map_sites: list[PublicDetection],
    texts: dict[int, SiteText],
    tiles: dict[int, list[tuple[int, int]]],
    credit: str | None,
    places: list[dict],
) -> str:
    view = article.map_view
    native = max(tiles) if tiles else max((f.site.zoom for f in fragments), default=MAP_MAX_ZOOM)
    payload = {
        "title": article.title,
        "view": {"center": list(view.center_lat_lon), "zoom": view.zoom} if view.center_lat_lon is not None else None,
        "bounds": _bounds_latlng(union_bbox([f.site.bbox for f in fragments])),
        # The imagery's native zoom and beyond (its tiles overzoomed); the first view of all fragments stops at it.
        "maxZoom": max(MAP_MAX_ZOOM, native + 2),
        "fitMaxZoom": min(SITE_ZOOM, native),
        "places": places,
        "maxFlyingClones": MAX_FLYING_CLONES,
        # Leaflet shows attributions as HTML: the credits are text, so they are escaped here.
        "attribution": html.escape(" · ".join(p for p in (credit and f"Imagery: {credit}", "Sites: amberwatch") if p)),
        "tiles": {
            "zooms": sorted(tiles),
            "minZoom": min(tiles) if tiles else None,
            "maxZoom": max(tiles) if tiles else None,
            "keys": [f"{z}/{x}/{y}" for z in sorted(tiles) for x, y in tiles[z]],
        },
        "basemap": None,
        "fragments": [_fragment_entry(f) for f in fragments],
        "sites": {"type": "FeatureCollection", "features": _site_features(map_sites, texts)},
    }
    return f"window.AMBER_STORY = {_json(payload)};\n"


def _with_basemap(data_js: str, article: Article) -> str:
    """data.js with the online basemap's settings put in after its texts lost their 'http(s)://' (if any)."""
    b = article.basemap
    if b is None:
        return data_js
    config = {
        "name": b.name,
        "url": b.url,
        "attribution": html.escape(b.attribution),
        "maxNativeZoom": b.max_zoom,
        "subdomains": b.subdomains,
    }
    # The top-level key is the only unescaped '"basemap":null' in the JSON (inside strings quotes are escaped).
    return data_js.replace('"basemap":null', '"basemap":' + _json(config), 1)


EXTERNAL_URL_RE = re.compile(r"https?://", re.IGNORECASE)


def find_external_urls(folder: str | os.PathLike[str], allowed: Sequence[str] = ()) -> list[tuple[str, str]]:
    """(file, excerpt) for every 'http://' or 'https://' in the text files of a built folder, except the URLs
    that start with one of ``allowed`` (the basemap the article asks for)."""
    hits: list[tuple[str, str]] = []
    root = Path(folder)
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in (".html", ".js", ".css", ".json", ".svg", ".txt", ".map"):
            continue
        text = path.read_text("utf-8", errors="replace")
        hits.extend(
            (str(path.relative_to(root)), text[max(0, m.start() - 30) : m.end() + 40])
            for m in EXTERNAL_URL_RE.finditer(text)
            if not any(text.startswith(a, m.start()) for a in allowed)
        )
    return hits


__all__ = ["StoryBuild", "build_story", "find_external_urls", "format_date", "format_hectares", "format_place"]
