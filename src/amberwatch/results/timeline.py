"""Sites that persist across dates: scans of one AOI at several imagery dates matched into sites.

Detections of different dates that overlap (a shared area, not just a touching edge) are one site: the sites are
the connected components of that overlap graph over all dates, so a field that splits or merges stays one site.
Each site has its hectares per date: the sum of its outlines at that date; 0 where its place was scanned with
imagery and nothing was found; None where that date's scan has no imagery there (its place, the site's
representative point, lies in no done tile of that scan or in a cell of one without imagery). Its status compares
the last two dates where its place has imagery (``site_status``).

``match_sites`` is pure (outlines and coverage in, sites out); ``load_timeline`` chooses the scans and reads them
through ``results.store`` and ``results.public`` (sites reviewed as not mining left out unless asked).
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from shapely import STRtree
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from amberwatch.errors import InvalidInputError
from amberwatch.imagery.tiles import lnglat_to_world_px
from amberwatch.imagery.types import TILE_SIZE_PX
from amberwatch.results.diff import classify_change
from amberwatch.results.public import ReviewState, public_detections
from amberwatch.results.records import Scan
from amberwatch.results.store import finished_scans, get_scan, imagery_tiles, query_detections

STATUSES = ("new", "growing", "stable", "shrinking", "gone", "unknown")
DEFAULT_REL_TOLERANCE = 0.20  # a site whose area changed by 20 % or less between its last two dates is stable
_STATUS_OF_CHANGE = {"added": "growing", "removed": "gone", "grown": "growing", "shrunk": "shrinking"}


@dataclass(frozen=True)
class Outline:
    """One detection of a dated layer: its id, lon/lat polygon and hectares."""

    detection_id: int
    geometry: BaseGeometry
    area_ha: float


@dataclass(frozen=True)
class DatedLayer:
    """One scan's detections at its imagery date, and whether it has imagery at a (lon, lat)."""

    date: str
    scan_id: int
    outlines: Sequence[Outline]
    has_imagery: Callable[[float, float], bool]


@dataclass(frozen=True)
class Site:
    """A place followed across the dates: hectares per date (0: scanned, nothing found; None: no imagery)."""

    site_id: int  # the lowest detection id among its outlines (stable while those outlines are)
    lon: float
    lat: float
    first_seen: str
    last_seen: str
    status: str
    area_ha: Mapping[str, float | None]
    detection_ids: tuple[int, ...]
    geometry: BaseGeometry  # the union of its outlines at the last date it was seen

    def to_dict(self) -> dict[str, Any]:
        """The site as the timeline JSON gives it."""
        return {
            "site_id": self.site_id,
            "lat": round(self.lat, 6),
            "lon": round(self.lon, 6),
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "status": self.status,
            "area_ha": {d: None if a is None else round(a, 4) for d, a in self.area_ha.items()},
        }


@dataclass(frozen=True)
class Timeline:
    """Sites over the dates of the chosen scans, and notes on the choice (mixed zooms or models, skipped scans)."""

    dates: tuple[str, ...]
    scan_ids: tuple[int, ...]
    sites: tuple[Site, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """``{"dates": [...], "sites": [...]}`` as ``timeline --json`` prints it."""
        return {"dates": list(self.dates), "sites": [s.to_dict() for s in self.sites]}

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per site (``area_ha_<date>`` columns), for CSV and GeoJSON properties."""
        out = []
        for s in self.sites:
            row = s.to_dict()
            areas = row.pop("area_ha")
            out.append({**row, **{f"area_ha_{d}": a for d, a in areas.items()}})
        return out

    def to_csv(self) -> str:
        """The sites as CSV text (an empty cell: no imagery at that date)."""
        buf = io.StringIO()
        cols = ["site_id", "lat", "lon", "first_seen", "last_seen", "status", *(f"area_ha_{d}" for d in self.dates)]
        writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows())
        return buf.getvalue()

    def to_geojson(self) -> dict[str, Any]:
        """A FeatureCollection: one feature per site, its outline at the last date it was seen."""
        features = [
            {"type": "Feature", "geometry": mapping(s.geometry), "properties": row}
            for s, row in zip(self.sites, self.rows(), strict=True)
        ]
        return {"type": "FeatureCollection", "features": features, "properties": {"dates": list(self.dates)}}


def overlap_groups(geometries: Sequence[BaseGeometry], layer_of: Sequence[int]) -> list[list[int]]:
    """Indices grouped into connected components of "overlaps (shared area > 0) an outline of another layer"."""
    n = len(geometries)
    if n == 0:
        return []
    geoms, layers = np.asarray(geometries, dtype=object), np.asarray(layer_of)
    left, right = STRtree(geoms).query(geoms, predicate="intersects")
    keep = (left < right) & (layers[left] != layers[right])
    left, right = left[keep], right[keep]
    if len(left):
        shared = shapely.area(shapely.intersection(geoms[left], geoms[right])) > 0  # touching edges do not count
        left, right = left[shared], right[shared]
    graph = coo_matrix((np.ones(len(left), dtype=np.int8), (left, right)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    groups: dict[int, list[int]] = {}
    for i, label in enumerate(labels.tolist()):
        groups.setdefault(label, []).append(i)
    return list(groups.values())


def site_status(areas_ha: Sequence[float | None], rel_tolerance: float = DEFAULT_REL_TOLERANCE) -> str:
    """Status from hectares per date (oldest first; None: no imagery): the last two dates with imagery compared.

    new: found only at the last of them, after at least one date with nothing found; gone: nothing at the last;
    growing / shrinking: more / less than ``rel_tolerance`` of the earlier area apart, else stable; unknown: its
    place has imagery at one date only.
    """
    scanned = [a for a in areas_ha if a is not None]
    if not scanned or scanned[-1] <= 0:
        return "gone"
    if len(scanned) == 1:
        return "unknown"
    if all(a <= 0 for a in scanned[:-1]):
        return "new"
    kind = classify_change(scanned[-2], scanned[-1], rel_tolerance=rel_tolerance, abs_tolerance_ha=0.0)
    return _STATUS_OF_CHANGE.get(kind, "stable")


def match_sites(layers: Sequence[DatedLayer], rel_tolerance: float = DEFAULT_REL_TOLERANCE) -> list[Site]:
    """Sites of dated layers (oldest first) by polygon overlap across dates, newest status first then largest."""
    members = [(k, o) for k, layer in enumerate(layers) for o in layer.outlines]
    groups = overlap_groups([o.geometry for _, o in members], [k for k, _ in members])
    sites = [_site(layers, [members[i] for i in g], rel_tolerance) for g in groups]
    order = {s: i for i, s in enumerate(STATUSES)}
    return sorted(sites, key=lambda s: (order[s.status], -_latest_area(s), s.site_id))


def _latest_area(site: Site) -> float:
    return next((a for a in reversed(list(site.area_ha.values())) if a), 0.0)


def _site(layers: Sequence[DatedLayer], members: list[tuple[int, Outline]], rel_tolerance: float) -> Site:
    """One site from its outlines (layer index, outline)."""
    by_layer: dict[int, list[Outline]] = {}
    for k, o in members:
        by_layer.setdefault(k, []).append(o)
    place = shapely.union_all([o.geometry for _, o in members]).representative_point()
    areas: dict[str, float | None] = {}
    for k, layer in enumerate(layers):
        found = by_layer.get(k)
        areas[layer.date] = sum(o.area_ha for o in found) if found else _zero_or_none(layer, place.x, place.y)
    seen = sorted(by_layer)
    last = shapely.union_all([o.geometry for o in by_layer[seen[-1]]])
    centre = last.centroid
    return Site(
        site_id=min(o.detection_id for _, o in members),
        lon=float(centre.x),
        lat=float(centre.y),
        first_seen=layers[seen[0]].date,
        last_seen=layers[seen[-1]].date,
        status=site_status(list(areas.values()), rel_tolerance),
        area_ha=areas,
        detection_ids=tuple(sorted(o.detection_id for _, o in members)),
        geometry=last,
    )


def _zero_or_none(layer: DatedLayer, lon: float, lat: float) -> float | None:
    return 0.0 if layer.has_imagery(lon, lat) else None


class TileCoverage:
    """Where a scan has imagery: its done tiles at its zoom and, per tile, its cells with imagery."""

    def __init__(self, conn: sqlite3.Connection, scan: Scan) -> None:
        self.zoom = scan.zoom
        self.tiles = {
            (t.x, t.y): (t.grid_cells, t.valid_cells) for t in imagery_tiles(conn, scan.id) if t.z == scan.zoom
        }

    def __call__(self, lon: float, lat: float) -> bool:
        """True when the point lies in a done tile of the scan, in a cell with imagery."""
        px, py = lnglat_to_world_px(lon, lat, self.zoom)
        tile = self.tiles.get((int(px // TILE_SIZE_PX), int(py // TILE_SIZE_PX)))
        if tile is None:
            return False
        cells, valid = tile
        if valid is None or not cells:
            return True
        col = min(cells - 1, int((px % TILE_SIZE_PX) / TILE_SIZE_PX * cells))
        row = min(cells - 1, int((py % TILE_SIZE_PX) / TILE_SIZE_PX * cells))
        return bool(valid[row * cells + col])


def load_timeline(
    conn: sqlite3.Connection,
    reviews: Mapping[int, ReviewState],
    *,
    aoi_geojson: str | None = None,
    scan_ids: Sequence[int] | None = None,
    include_removed: bool = False,
    rel_tolerance: float = DEFAULT_REL_TOLERANCE,
) -> Timeline:
    """The timeline of the chosen scans (``scan_ids``), or of the finished scans of an AOI (the latest scan's)."""
    scans, notes = pick_scans(conn, scan_ids) if scan_ids else scans_of_aoi(conn, aoi_geojson)
    layers = [
        DatedLayer(str(s.imagery_date), s.id, _outlines(conn, reviews, s.id, include_removed), TileCoverage(conn, s))
        for s in scans
    ]
    sites = match_sites(layers, rel_tolerance)
    return Timeline(tuple(x.date for x in layers), tuple(s.id for s in scans), tuple(sites), tuple(notes))


def map_json(conn: sqlite3.Connection, timeline: Timeline) -> dict[str, Any]:
    """The timeline as the map reads it (``/api/timeline``, a dated edition's ``timeline.json``): ``Timeline.to_dict``
    with ``scan_ids`` (date -> scan), each site's ``detection_ids`` (date -> its detection ids there) and ``notes``."""
    date_of = {}
    for date, scan_id in zip(timeline.dates, timeline.scan_ids, strict=True):
        date_of.update({d.id: date for d in query_detections(conn, scan_id=scan_id)})
    out = timeline.to_dict()
    for site, row in zip(timeline.sites, out["sites"], strict=True):
        per_date: dict[str, list[int]] = {d: [] for d in timeline.dates}
        for det in site.detection_ids:
            per_date[date_of[det]].append(det)
        row["detection_ids"] = per_date
    out["scan_ids"] = dict(zip(timeline.dates, timeline.scan_ids, strict=True))
    out["notes"] = list(timeline.notes)
    return out


def _outlines(conn: sqlite3.Connection, reviews: Mapping[int, ReviewState], scan_id: int, removed: bool) -> list:
    out = []
    for d in public_detections(conn, reviews, scan_id=scan_id, places=False, include_removed=removed):
        geom = shape(json.loads(d.geometry_geojson))
        out.append(Outline(d.id, geom if geom.is_valid else geom.buffer(0), d.area_ha))
    return out


def _describe(scans: Sequence[Scan]) -> str:
    return ", ".join(
        f"scan {s.id} ({s.imagery_date or 'undated'}, zoom {s.zoom}, model {s.model_version})" for s in scans
    )


def pick_scans(conn: sqlite3.Connection, scan_ids: Sequence[int]) -> tuple[list[Scan], list[str]]:
    """The scans a user picked, oldest date first; mixed zooms, models or AOIs are allowed and stated in a note."""
    scans = [get_scan(conn, i) for i in dict.fromkeys(scan_ids)]
    for s in scans:
        if s.status != "finished":
            raise InvalidInputError(f"scan {s.id} is {s.status}, not finished: finish it (scan again) first")
        if not s.imagery_date:
            raise InvalidInputError(
                f"scan {s.id} has no imagery date: scan the AOI again with --imagery-date YYYY[-MM[-DD]]"
            )
    dates = [s.imagery_date for s in scans]
    twice = sorted({d for d in dates if dates.count(d) > 1})
    if twice:
        raise InvalidInputError(f"scans {_describe([s for s in scans if s.imagery_date in twice])} share a date")
    scans = _two_dates_at_least(sorted(scans, key=lambda s: str(s.imagery_date)))
    notes = []
    if len({(s.zoom, s.model_version) for s in scans}) > 1:
        notes.append(f"the picked scans mix zooms or models: {_describe(scans)}; areas also differ by those")
    if len({s.aoi_geojson for s in scans}) > 1:
        notes.append("the picked scans cover different AOIs: a site outside one of them has no area there (null)")
    return scans, notes


def scans_of_aoi(conn: sqlite3.Connection, aoi_geojson: str | None) -> tuple[list[Scan], list[str]]:
    """The finished scans of one AOI (given, else the latest finished scan's), one per date (the latest), dated."""
    done = finished_scans(conn)
    if not done:
        raise InvalidInputError("the project holds no finished scan: run 'amberwatch scan' first")
    aoi = aoi_geojson if aoi_geojson is not None else done[-1].aoi_geojson
    mine = [s for s in done if s.aoi_geojson == aoi]
    if not mine:
        raise InvalidInputError("no finished scan covers that AOI: scan it with --imagery-date at two dates first")
    notes = []
    undated = [s for s in mine if not s.imagery_date]
    if undated:
        notes.append(f"left out scans without an imagery date: {_describe(undated)}")
    dated = [s for s in mine if s.imagery_date]
    if len({(s.zoom, s.model_version) for s in dated}) > 1:
        raise InvalidInputError(
            f"the scans of this AOI mix zooms or models: {_describe(dated)}; pick comparable ones with --scans"
        )
    latest = {str(s.imagery_date): s for s in dated}  # oldest first: a later scan of a date replaces an earlier
    return _two_dates_at_least([latest[d] for d in sorted(latest)], undated), notes


def _two_dates_at_least(scans: list[Scan], undated: Sequence[Scan] = ()) -> list[Scan]:
    if len(scans) >= 2:
        return scans
    found = _describe(scans) if scans else "none"
    hint = "; scans without a date need --imagery-date: scan the AOI again with it" if undated else ""
    raise InvalidInputError(f"a timeline needs finished scans at two or more imagery dates; dated: {found}{hint}")
