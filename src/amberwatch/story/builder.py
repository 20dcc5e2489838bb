"""Build the static story folder: index.html, data.js, assets (own + Leaflet), fragment images, map tiles."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import warnings
from dataclasses import dataclass
from datetime import date
from importlib import resources
from pathlib import Path
from string import Template

from amberwatch import __version__
from amberwatch.db import connect
from amberwatch.errors import AmberwatchWarning, InvalidInputError, NotFoundError
from amberwatch.imagery.cache import TileCache, default_cache_path
from amberwatch.imagery.mosaic import open_cached_source
from amberwatch.imagery.sources import TileSource
from amberwatch.imagery.types import LngLatBbox
from amberwatch.results.store import ensure_schema
from amberwatch.story.article import Article, read_article
from amberwatch.story.images import FragmentImage, export_tiles, fragment_bbox, write_fragment
from amberwatch.story.leaflet import copy_leaflet
from amberwatch.story.markup import render_body
from amberwatch.story.packing import DESKTOP, PHONE, Placement, check_packing, pack_block, size_classes_by_area
from amberwatch.story.selection import Site, pick_scan, select_fragments, select_map_sites

OWN_ASSETS = ("story.css", "story.js")
OUTPUT_SUBDIRS = ("assets", "fragments", "tiles")
MAX_FLYING_CLONES = 24
SITE_ZOOM = 17.0
MAP_MAX_ZOOM = 20
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class StoryBuild:
    """What a build wrote: the page, the fragment count by image origin and the map tiles."""

    index_html: Path
    scan_id: int | None
    fragment_ids: tuple[int, ...]
    fragment_origins: dict[str, int]
    n_map_sites: int
    n_tiles: int


@dataclass(frozen=True)
class Fragment:
    """A detection on the page: its site, image files and caption texts."""

    site: Site
    image: FragmentImage
    place: str
    date_text: str | None
    caption: str
    alt: str


def format_place(lat_deg: float, lon_deg: float) -> str:
    """Coordinates as a reader sees them: 51.3012°N 26.8721°E."""
    ns = "N" if lat_deg >= 0 else "S"
    ew = "E" if lon_deg >= 0 else "W"
    return f"{abs(lat_deg):.4f}°{ns} {abs(lon_deg):.4f}°{ew}"


def format_date(text: str | None) -> str | None:
    """An ISO date as '5 Oct 2015' (other text is shown as it is)."""
    if not text:
        return None
    try:
        d = date.fromisoformat(str(text)[:10])
    except ValueError:
        return str(text)
    return f"{d.day} {MONTHS[d.month - 1]} {d.year}"


def format_hectares(area_ha: float) -> str:
    """Hectares with sensible precision: 0.42 ha, 3.1 ha, 27 ha."""
    if area_ha < 1:
        return f"{area_ha:.2f} ha"
    if area_ha < 10:
        return f"{area_ha:.1f} ha"
    return f"{area_ha:.0f} ha"


def build_story(
    article_path: str | os.PathLike[str],
    db_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    scan_id: int | None = None,
    cache_path: str | os.PathLike[str] | None = None,
) -> StoryBuild:
    """Build the static story page for an article from the detections in a project DB."""
    article = read_article(article_path)
    db = Path(db_path)
    scan, sites, map_sites = _select_sites(db, article, scan_id)
    _warn_unconfirmed(sites, map_sites)
    cache_file = _cache_file(db, cache_path)
    out = Path(out_dir)
    _prepare_out_dir(out)
    cache = _open_cache(cache_file)
    sources: dict[str, TileSource] = {}
    try:
        fragments = _write_fragments(article, sites, cache, sources, out)
        tiles = _write_tiles(fragments, cache, sources, out)
    finally:
        for src in sources.values():
            src.close()
        if cache is not None:
            cache.close()
    _copy_assets(out)
    (out / "data.js").write_text(_without_schemes(_data_js(article, fragments, map_sites, tiles), article), "utf-8")
    index = out / "index.html"
    index.write_text(_without_schemes(_index_html(article, fragments, map_sites, scan), article), "utf-8")
    leftovers = find_external_urls(out)
    if leftovers:
        raise InvalidInputError(f"story folder {str(out)!r} would load external URLs: {leftovers[:3]}")
    origins: dict[str, int] = {}
    for f in fragments:
        origins[f.image.origin] = origins.get(f.image.origin, 0) + 1
    return StoryBuild(
        index_html=index,
        scan_id=scan,
        fragment_ids=tuple(f.site.id for f in fragments),
        fragment_origins=origins,
        n_map_sites=len(map_sites),
        n_tiles=sum(len(v) for v in tiles.values()),
    )


def _warn_unconfirmed(sites: list[Site], map_sites: list[Site]) -> None:
    """Say how many published sites no reviewer has confirmed (sites reviewed as not mining are already out)."""
    shown = {s.id: s for s in [*sites, *map_sites]}
    unconfirmed = sum(not s.confirmed for s in shown.values())
    if unconfirmed:
        warnings.warn(
            AmberwatchWarning(
                f"{unconfirmed} of the {len(shown)} sites in the story are not confirmed by a reviewer "
                f"({sum(not s.confirmed for s in sites)} of the {len(sites)} fragments): check them on /review first"
            ),
            stacklevel=3,  # blame build_story's caller
        )


def _select_sites(db: Path, article: Article, scan_id: int | None) -> tuple[int | None, list[Site], list[Site]]:
    """(scan shown on the map, fragment sites, map sites) read from the project DB."""
    conn = connect(db, create=False)
    try:
        ensure_schema(conn)
        if article.fragments.ids and scan_id is None:
            # Explicit ids name their detections in any scan; the map shows their scan when they share one.
            sites = select_fragments(conn, article.fragments, None)
            scan_ids = {s.scan_id for s in sites}
            scan = scan_ids.pop() if len(scan_ids) == 1 else None
        else:
            scan = pick_scan(conn, scan_id)
            sites = select_fragments(conn, article.fragments, scan)
        return scan, sites, select_map_sites(conn, scan)
    finally:
        conn.close()


def _cache_file(db: Path, cache_path: str | os.PathLike[str] | None) -> Path:
    cache_file = Path(cache_path) if cache_path else default_cache_path(db)
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


def _without_schemes(text: str, article: Article) -> str:
    """Drop 'http(s)://' left in front matter texts (title, byline, places): the page stays self-contained."""
    if not EXTERNAL_URL_RE.search(text):
        return text
    warnings.warn(
        AmberwatchWarning(f"article {str(article.path)!r}: front matter addresses shown without 'http(s)://'"),
        stacklevel=3,
    )
    return EXTERNAL_URL_RE.sub("", text)


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
    article: Article, sites: list[Site], cache: TileCache | None, sources: dict[str, TileSource], out: Path
) -> list[Fragment]:
    fragments: list[Fragment] = []
    for site in sites:
        source = _source(cache, sources, site.imagery_source_id)
        image = write_fragment(site, source, cache, out / "fragments", "fragments")
        coords = format_place(site.centroid_lat, site.centroid_lon)
        place = article.places.get(site.id) or coords
        when = format_date(site.capture_date)
        ha = format_hectares(site.area_ha)
        caption = " · ".join(p for p in (place, when, ha) if p)
        near = f"{place} ({coords})" if place != coords else coords
        seen = f", imagery of {when}" if when else ""
        alt = f"Satellite image of a suspected amber-mining site of {ha} at {near}{seen}"
        fragments.append(Fragment(site, image, place, when, caption, alt))
    return fragments


def _write_tiles(
    fragments: list[Fragment], cache: TileCache | None, sources: dict[str, TileSource], out: Path
) -> dict[int, list[tuple[int, int]]]:
    if cache is None:
        return {}
    written: dict[int, list[tuple[int, int]]] = {}
    by_source: dict[tuple[str, int], list[LngLatBbox]] = {}
    for f in fragments:
        by_source.setdefault((f.site.imagery_source_id, f.site.zoom), []).append(_grow(fragment_bbox(f.site), 1.0))
    # One exported tile set per page: the source with the most fragments (a story is told from one scan).
    if not by_source:
        return {}
    (source_id, zoom), areas = max(by_source.items(), key=lambda kv: len(kv[1]))
    source = _source(cache, sources, source_id)
    assert source is not None
    for z, xs in export_tiles(source, areas, zoom, out / "tiles").items():
        written.setdefault(z, []).extend(xs)
    return written


def _grow(b: LngLatBbox, factor: float) -> LngLatBbox:
    dx = (b.east_deg - b.west_deg) * factor
    dy = (b.north_deg - b.south_deg) * factor
    return LngLatBbox(
        max(b.west_deg - dx, -180.0),
        max(b.south_deg - dy, -85.0),
        min(b.east_deg + dx, 180.0),
        min(b.north_deg + dy, 85.0),
    )


def _bounds_latlng(b: LngLatBbox) -> list[list[float]]:
    return [[round(b.south_deg, 7), round(b.west_deg, 7)], [round(b.north_deg, 7), round(b.east_deg, 7)]]


def _round_coords(value: object) -> object:
    if isinstance(value, float):
        return round(value, 7)
    if isinstance(value, list):
        return [_round_coords(v) for v in value]
    return value


def _site_features(article: Article, fragments: list[Fragment], map_sites: list[Site]) -> list[dict]:
    """GeoJSON features of the map sites, captioned like their fragments."""
    captions = {f.site.id: f.caption for f in fragments}
    features = []
    for s in map_sites:
        geometry = {"type": s.geometry.get("type"), "coordinates": _round_coords(s.geometry.get("coordinates"))}
        place = article.places.get(s.id) or format_place(s.centroid_lat, s.centroid_lon)
        caption = captions.get(s.id) or " · ".join(
            p for p in (place, format_date(s.capture_date), format_hectares(s.area_ha)) if p
        )
        features.append({"type": "Feature", "id": s.id, "geometry": geometry, "properties": {"caption": caption}})
    return features


def _fragment_entry(f: Fragment) -> dict:
    return {
        "id": f.site.id,
        "center": [round(f.site.centroid_lat, 7), round(f.site.centroid_lon, 7)],
        "zoom": SITE_ZOOM,
        "siteBounds": _bounds_latlng(f.site.bbox),
        "bounds": _bounds_latlng(f.image.bbox) if f.image.bbox is not None else None,
        "overlay": f.image.files[-1][1],
        "caption": f.caption,
        "alt": f.alt,
    }


def _data_js(
    article: Article,
    fragments: list[Fragment],
    map_sites: list[Site],
    tiles: dict[int, list[tuple[int, int]]],
) -> str:
    all_boxes = [f.site.bbox for f in fragments]
    bounds = [
        [min(b.south_deg for b in all_boxes), min(b.west_deg for b in all_boxes)],
        [max(b.north_deg for b in all_boxes), max(b.east_deg for b in all_boxes)],
    ]
    payload = {
        "title": article.title,
        "view": (
            {"center": list(article.map_view.center_lat_lon), "zoom": article.map_view.zoom}
            if article.map_view.center_lat_lon is not None
            else None
        ),
        "bounds": bounds,
        "maxZoom": MAP_MAX_ZOOM,
        "maxFlyingClones": MAX_FLYING_CLONES,
        "attribution": "Imagery: the scan's tile cache · detections: amberwatch",
        "tiles": {
            "zooms": sorted(tiles),
            "minZoom": min(tiles) if tiles else None,
            "maxZoom": max(tiles) if tiles else None,
            "keys": [f"{z}/{x}/{y}" for z in sorted(tiles) for x, y in tiles[z]],
        },
        "fragments": [_fragment_entry(f) for f in fragments],
        "sites": {"type": "FeatureCollection", "features": _site_features(article, fragments, map_sites)},
    }
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    # Inline data must not close the script or contain a line separator that old JS engines reject.
    text = text.replace("</", "<\\/").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return f"window.AMBER_STORY = {text};\n"


def _index_html(article: Article, fragments: list[Fragment], map_sites: list[Site], scan_id: int | None) -> str:
    classes = size_classes_by_area([f.site.area_ha for f in fragments])

    def block_html(indices: list[int]) -> str:
        return _block_html([fragments[i] for i in indices], [classes[i] for i in indices])

    body = render_body(article.body_markdown, len(fragments), block_html, article.path)
    e = html.escape
    lead_html = f'<p class="lead">{e(article.lead)}</p>' if article.lead else ""
    bits = []
    if article.byline:
        bits.append(e(article.byline))
    if article.date:
        bits.append(f'<time datetime="{e(article.date)}">{e(format_date(article.date) or article.date)}</time>')
    byline_html = f'<p class="byline">{" · ".join(bits)}</p>' if bits else ""
    scan_text = f"scan {scan_id}" if scan_id is not None else "all scans"
    footer = (
        f"Fragments are detections of a machine-learning model ({e(scan_text)}); each was found on satellite imagery "
        "and may be wrong. Built with amberwatch."
    )
    template = Template(resources.files("amberwatch.story").joinpath("assets", "template.html").read_text("utf-8"))
    return template.substitute(
        lang=e(article.lang),
        title=e(article.title),
        lead_attr=e(article.lead, quote=True),
        version=e(__version__),
        kicker="Satellite investigation",
        lead_html=lead_html,
        byline_html=byline_html,
        body=body,
        legend=_legend(len(fragments), len({s.id for s in map_sites} - {f.site.id for f in fragments})),
        footer=footer,
    )


def _legend(n_fragments: int, n_others: int) -> str:
    """The map legend: the story's fragments, and the other detections only when there are some."""
    plural = "s" if n_fragments != 1 else ""
    text = f'<span class="legend-swatch legend-swatch--frag"></span> {n_fragments} fragment{plural} in this story'
    if n_others:
        others = "other detection" + ("s" if n_others != 1 else "")
        text += f' <span class="legend-swatch legend-swatch--site"></span> {n_others} {others}'
    return text


def _placement_style(a: Placement, b: Placement) -> str:
    """CSS variables of a fragment's grid lines: --d* on desktop, --p* on phones (1-based lines)."""
    return (
        f"--dx:{a.col + 1};--dy:{a.row + 1};--dw:{a.width_cells};--dh:{a.height_cells};"
        f"--px:{b.col + 1};--py:{b.row + 1};--pw:{b.width_cells};--ph:{b.height_cells}"
    )


def _sizes(dw: int, pw: int) -> str:
    return (
        f"(max-width: 640px) calc(100vw * {pw} / {PHONE.columns}), "
        f"calc(min(100vw - 3rem, 66rem) * {dw} / {DESKTOP.columns})"
    )


def _block_html(fragments: list[Fragment], classes: list[int]) -> str:
    desktop = pack_block(classes, DESKTOP)
    phone = pack_block(classes, PHONE)
    check_packing(desktop)
    check_packing(phone)
    e = html.escape
    items = []
    for i, f in enumerate(fragments):
        img = f.image
        default_src = next((path for w, path in img.files if w >= 640), img.files[-1][1])
        srcset = ", ".join(f"{path} {w}w" for w, path in img.files)
        height = max(1, round(img.height_px * img.files[-1][0] / img.width_px))
        d, p = desktop.placements[i], phone.placements[i]
        items.append(
            f'<figure class="frag" id="frag-{f.site.id}" data-site="{f.site.id}" style="{_placement_style(d, p)}">'
            f'<button type="button" class="frag-btn" aria-describedby="cap-{f.site.id}">'
            f'<img src="{e(default_src)}" srcset="{e(srcset)}" sizes="{_sizes(d.width_cells, p.width_cells)}"'
            f' width="{img.files[-1][0]}" height="{height}" loading="lazy" decoding="async"'
            f' alt="{e(f.alt, quote=True)}">'
            '<span class="visually-hidden"> — show this site on the map</span>'
            "</button>"
            f'<figcaption id="cap-{f.site.id}"><span class="cap-place">{e(f.place)}</span>'
            + (f'<span class="cap-date">{e(f.date_text)}</span>' if f.date_text else "")
            + f'<span class="cap-ha">{e(format_hectares(f.site.area_ha))}</span></figcaption>'
            "</figure>"
        )
    label = f"Satellite fragments of {len(fragments)} detected site{'s' if len(fragments) != 1 else ''}"
    return (
        f'<section class="frag-block" aria-label="{e(label)}">'
        f'<div class="frag-grid" style="--drows:{desktop.rows};--prows:{phone.rows}">'
        + "".join(items)
        + "</div></section>"
    )


EXTERNAL_URL_RE = re.compile(r"https?://", re.IGNORECASE)


def find_external_urls(folder: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """(file, excerpt) for every 'http://' or 'https://' in the text files of a built folder."""
    hits: list[tuple[str, str]] = []
    root = Path(folder)
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in (".html", ".js", ".css", ".json", ".svg", ".txt", ".map"):
            continue
        text = path.read_text("utf-8", errors="replace")
        hits.extend(
            (str(path.relative_to(root)), text[max(0, m.start() - 30) : m.end() + 40])
            for m in EXTERNAL_URL_RE.finditer(text)
        )
    return hits


__all__ = ["StoryBuild", "build_story", "find_external_urls", "format_date", "format_hectares", "format_place"]
