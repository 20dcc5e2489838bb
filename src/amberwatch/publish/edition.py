"""``amberwatch publish``: the public map as static files any static host (a CDN) serves, no server behind them.

The folder holds, per imagery date shown (one for an undated scan; each date of a dated scan's timeline):

- ``imagery.pmtiles`` (``imagery-<date>.pmtiles`` for the other dates): the scanned area's imagery from the tile
  cache with its overviews, one PMTiles v3 archive read by HTTP range requests (``publish.archive``);
- ``sites.geojson`` (``sites-<date>.geojson``): the public sites (``publish.sites``);

and once: ``timeline.json`` for a dated edition (its sites followed across the dates, as the live map's
``/api/timeline`` gives them: the viewer's "Over time" and its "new since" / "growing" filters), the viewer
(``index.html``, ``static/``, ``vendor/``: the live map's page in its static mode, ``publish.viewer``),
``places.geojson`` (place labels from the gazetteer), ``locator.svg`` (the locator inset of the sites' extent,
``results.locator``; none without sites), ``config.json`` (what a viewer needs: title, bounds, zooms, credit, dates
and their files, the timeline or null, the locator or null, the flag endpoint or null: flagging hidden, the basemap
or null), ``assets/`` (the vendored ``pmtiles`` browser build and the Leaflet layer reading an archive) and, when
given, a built story copied under ``story/``.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from amberwatch import __version__
from amberwatch.db import writing
from amberwatch.errors import InvalidInputError, NotFoundError
from amberwatch.imagery.aoi import aoi_bounds
from amberwatch.imagery.basemap import basemap_config
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.types import LngLatBbox
from amberwatch.publish.archive import ArchiveSummary, write_imagery_archive
from amberwatch.publish.sites import SiteLayer, places_geojson, site_layer
from amberwatch.publish.viewer import write_viewer
from amberwatch.results.locator import locator_document
from amberwatch.results.public import PublicDetection, ReviewState, display_name, scan_credit
from amberwatch.results.records import Scan
from amberwatch.results.store import get_scan, latest_scan_id, open_results
from amberwatch.results.timeline import Timeline, load_timeline, map_json
from amberwatch.review.feedback import review_states

ASSETS_DIR = Path(__file__).parent / "assets"
ASSET_FILES = ("pmtiles.js", "pmtiles-layer.js", "PMTILES-LICENSE.txt")
CONFIG_VERSION = 1
LOCATOR_FILE = "locator.svg"
TIMELINE_FILE = "timeline.json"
_OUTPUT_GLOBS = (
    "index.html",
    "config.json",
    "places.geojson",
    LOCATOR_FILE,
    TIMELINE_FILE,
    "sites*.geojson",
    "imagery*.pmtiles",
)
_OUTPUT_DIRS = ("assets", "story", "static", "vendor")


@dataclass(frozen=True)
class PublishOptions:
    """What to publish and how: the scan (None: the latest finished), a built story folder, the flag endpoint (None:
    flagging hidden), a basemap preset (None: none), the title (None: the scan's name), overwrite a non-empty folder."""

    scan_id: int | None = None
    story_dir: str | None = None
    flag_endpoint: str | None = None
    basemap: str | None = None
    title: str | None = None
    force: bool = False


@dataclass(frozen=True)
class PublishedLayer:
    """One imagery date (or the undated scan) as published: its scan, files and what they hold."""

    scan: Scan
    imagery_file: str
    sites_file: str
    archive: ArchiveSummary
    sites: SiteLayer
    credit: str

    def to_config(self) -> dict[str, Any]:
        """The layer's entry in config.json."""
        return {
            "scan_id": self.scan.id,
            "date": self.scan.imagery_date,
            "imagery": self.imagery_file,
            "sites": self.sites_file,
            "credit": self.credit,
            "min_zoom": self.archive.min_zoom,
            "max_zoom": self.archive.max_zoom,
            "tile_formats": list(self.archive.formats),
            "n_sites": len(self.sites.sites),
            "area_scanned_km2": round(self.scan.area_scanned_km2, 4),
            "hectares": round(self.sites.hectares, 4),
        }


@dataclass(frozen=True)
class Edition:
    """A published folder: its config, layers (the chosen scan's first), place labels and whether a story is in it."""

    out_dir: Path
    config: dict[str, Any]
    layers: tuple[PublishedLayer, ...]
    n_places: int
    has_story: bool


def check_flag_endpoint(url: str | None) -> str | None:
    """The flag endpoint as given (an http(s) URL, where ``amberwatch serve`` answers), or None; else an error."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in url):
        raise InvalidInputError(f"flag endpoint {url!r} is not an http:// or https:// address")
    return url.rstrip("/")


def check_story_dir(path: str | None) -> Path | None:
    """A folder ``amberwatch story build`` wrote (it holds index.html), or None; else an error naming it."""
    if path is None:
        return None
    folder = Path(path)
    if not (folder / "index.html").is_file():
        raise InvalidInputError(
            f"story folder {str(folder)!r} holds no index.html: build it with 'amberwatch story build'"
        )
    return folder


def check_out_dir(out: Path, force: bool) -> None:
    """Refuse a file, or a non-empty folder without ``force``, as the output folder."""
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"output {str(out)!r} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise InvalidInputError(f"output folder {str(out)!r} is not empty: give --force to publish over it")


def clear_previous(out: Path) -> None:
    """Remove the files an earlier publish wrote there (a dated edition's old dates too); nothing else."""
    for pattern in _OUTPUT_GLOBS:
        for path in out.glob(pattern):
            path.unlink()
    for name in _OUTPUT_DIRS:
        if (out / name).is_dir():
            shutil.rmtree(out / name)


def choose_scan(conn: sqlite3.Connection, scan_id: int | None) -> Scan:
    """The scan to publish: the one asked for (finished), else the latest finished; errors name what is missing."""
    if scan_id is None:
        scan_id = latest_scan_id(conn, finished=True)
        if scan_id is None:
            raise NotFoundError("the project holds no finished scan to publish: run 'amberwatch scan' first")
    scan = get_scan(conn, scan_id)
    if scan.status != "finished":
        raise InvalidInputError(f"scan {scan.id} is {scan.status}, not finished: publish a finished scan")
    return scan


def dated_scans(
    conn: sqlite3.Connection, reviews: dict[int, ReviewState], scan: Scan
) -> tuple[list[Scan], Timeline | None]:
    """The scans to publish (the chosen one first) and their timeline: each date of the chosen scan's AOI when it is
    one of two or more dated scans there, else the scan alone."""
    if scan.imagery_date is None:
        return [scan], None
    timeline = load_timeline(conn, reviews, aoi_geojson=scan.aoi_geojson)
    if len(timeline.dates) < 2 or scan.id not in timeline.scan_ids:
        return [scan], None
    others = [get_scan(conn, i) for i in timeline.scan_ids if i != scan.id]
    return [scan, *others], timeline


def scan_bounds(scan: Scan) -> LngLatBbox:
    """The scan's AOI bounds, or an error naming the scan when its AOI cannot be read."""
    bounds = aoi_bounds(scan.aoi_geojson)
    if bounds is None:
        raise InvalidInputError(f"scan {scan.id}: its AOI is not readable GeoJSON")
    return LngLatBbox(*bounds)


def layer_files(scan: Scan, first: bool) -> tuple[str, str]:
    """(imagery file, sites file) of a layer: the chosen scan's plain names, another date's suffixed by its date."""
    suffix = "" if first else f"-{scan.imagery_date}"
    return f"imagery{suffix}.pmtiles", f"sites{suffix}.geojson"


def publish_layer(
    conn: sqlite3.Connection,
    cache: TileCache,
    reviews: dict[int, ReviewState],
    scan: Scan,
    out: Path,
    first: bool,
    timeline: Timeline | None,
) -> PublishedLayer:
    """Write one scan's imagery archive and sites into ``out``."""
    imagery_file, sites_file = layer_files(scan, first)
    credit = scan_credit(conn, scan.id)
    meta = {
        "name": display_name(scan.name, scan.id),
        "attribution": credit,
        "type": "baselayer",
        "imagery_date": scan.imagery_date,
        "generator": f"amberwatch {__version__}",
    }
    bounds = scan_bounds(scan)
    archive = write_imagery_archive(cache, scan.imagery_source_id, scan.zoom, bounds, out / imagery_file, meta)
    sites = site_layer(conn, reviews, scan.id, credit, scan.imagery_date, timeline)
    (out / sites_file).write_text(sites.geojson, "utf-8")
    return PublishedLayer(scan, imagery_file, sites_file, archive, sites, credit)


def write_locator(out: Path, sites: list[PublicDetection]) -> str | None:
    """The locator inset of the sites' extent as ``locator.svg`` (``results.locator``); its name, or None when there
    are no sites or no country outlines (the viewer then shows none)."""
    svg = locator_document(d.bbox for d in sites)
    if svg is None:
        return None
    (out / LOCATOR_FILE).write_text(svg, "utf-8")
    return LOCATOR_FILE


def write_timeline(out: Path, conn: sqlite3.Connection, timeline: Timeline | None) -> str | None:
    """A dated edition's ``timeline.json`` (``results.timeline.map_json``); its name, or None for one date."""
    if timeline is None:
        return None
    (out / TIMELINE_FILE).write_text(json.dumps(map_json(conn, timeline)), "utf-8")
    return TIMELINE_FILE


def edition_config(
    layers: list[PublishedLayer],
    title: str,
    flag_endpoint: str | None,
    basemap: dict | None,
    story: bool,
    locator: str | None = None,
    timeline: str | None = None,
) -> dict[str, Any]:
    """config.json: what a viewer needs to show the edition (``date``: the layer shown first; layers in date order;
    ``locator``: the locator inset's file, or null; ``timeline``: a dated edition's timeline file, or null)."""
    first = layers[0]
    dates = sorted(str(x.scan.imagery_date) for x in layers if x.scan.imagery_date) if len(layers) > 1 else []
    return {
        "version": CONFIG_VERSION,
        "generator": f"amberwatch {__version__}",
        "title": title,
        "bounds": [round(v, 6) for v in scan_bounds(first.scan).as_tuple()],
        "min_zoom": min(x.archive.min_zoom for x in layers),
        "max_zoom": max(x.archive.max_zoom for x in layers),
        "credit": first.credit,
        "date": first.scan.imagery_date,
        "dates": dates,
        "layers": [x.to_config() for x in sorted(layers, key=lambda x: str(x.scan.imagery_date))],
        "places": "places.geojson",
        "locator": locator,
        "timeline": timeline,
        "assets": {name.removesuffix(".js"): f"assets/{name}" for name in ASSET_FILES if name.endswith(".js")},
        "flag_endpoint": flag_endpoint,
        "basemap": basemap,
        "story": "story/index.html" if story else None,
    }


def copy_assets(out: Path, story: Path | None) -> None:
    """The viewer's vendored scripts into ``out/assets``; the built story into ``out/story``."""
    (out / "assets").mkdir(parents=True, exist_ok=True)
    for name in ASSET_FILES:
        shutil.copyfile(ASSETS_DIR / name, out / "assets" / name)
    if story is not None:
        shutil.copytree(story, out / "story")


def publish(db: str | Path, out_dir: str | Path, options: PublishOptions = PublishOptions()) -> Edition:
    """Write the static edition of a project's scan into ``out_dir`` (see the module docstring); one-line errors for
    an unknown or unfinished scan, a project without scans, no cached imagery, a non-empty folder without force."""
    out = Path(out_dir)
    flag_endpoint = check_flag_endpoint(options.flag_endpoint)
    basemap = basemap_config(options.basemap) if options.basemap else None
    story = check_story_dir(options.story_dir)
    check_out_dir(out, options.force)
    with open_results(db) as project:
        conn = project.conn
        scan = choose_scan(conn, options.scan_id)
        cache_path = project.tile_cache_path()
        if not cache_path.exists():
            raise NotFoundError(f"no tile cache at {str(cache_path)!r}: the scan's imagery is not cached")
        reviews = review_states(conn)
        scans, timeline = dated_scans(conn, reviews, scan)
        with TileCache(cache_path) as cache, writing(out, "published folder"):
            out.mkdir(parents=True, exist_ok=True)
            clear_previous(out)
            layers = [publish_layer(conn, cache, reviews, s, out, i == 0, timeline) for i, s in enumerate(scans)]
            sites = [d for x in layers for d in x.sites.sites]
            points = [(d.centroid_lon, d.centroid_lat) for d in sites] or [scan_bounds(scan).center_deg]
            places = places_geojson(points)
            (out / "places.geojson").write_text(json.dumps(places), "utf-8")
            copy_assets(out, story)
            title = options.title or display_name(scan.name, scan.id)
            locator = write_locator(out, sites)
            timeline_file = write_timeline(out, conn, timeline)
            config = edition_config(layers, title, flag_endpoint, basemap, story is not None, locator, timeline_file)
            (out / "config.json").write_text(json.dumps(config, indent=1), "utf-8")
            write_viewer(out, title, basemap)
    return Edition(out, config, tuple(layers), len(places["features"]), story is not None)
