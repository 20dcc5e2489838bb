"""What the public may see of the results: the one public projection of a detection, and scans as public layers.

A detection in public (``PublicDetection``) has its outline, hectares, scores, imagery date, review state and place
name; a site a reviewer found not mining (``ReviewState.removed``) is left out unless a caller asks for it (the map
draws such sites greyed). The review states come from ``review.feedback.review_states``, above this layer. The web
map, the exports, the timeline and the story all take their detections from ``public_detections``.

Reviews follow the site (``follow_reviews``): a detection nobody decided takes the verdict ("not mining" or
"confirmed") of a decided detection of the same AOI at another imagery date when their outlines match: IoU >= 0.5,
or at least 80 % of the new outline inside the reviewed one (a piece of the reviewed place). An outline that grew
well beyond the reviewed one (to more than twice its area when it covers it) matches neither and is not covered.
The state is marked as inherited (``PublicDetection.review_from``: the source detection, scan and date); a
detection's own decision always wins, and only direct decisions are followed (no chains over dates).

A scan row holds where its imagery and cache lie on the scanning machine (paths, URL templates) and, for old
scans, the AOI path as the name. None of that is for the public: a layer shows a display name (a path-like name
reduced to its file stem) and a credit: the xyzservices attribution for a preset, else the credit given at scan
time (``ScanParams.imagery_credit``), else the attribution of the preset whose URL template the scan used, else
"imagery provider not stated" (never the scan's or its AOI file's name: that credits nobody; the layer says
``credit_stated`` false so reviewers are warned). Layer totals count the sites a
reviewer has not removed; the removed ones are counted apart (``removed_after_review``, ``removed_hectares``).
"""

from __future__ import annotations

import functools
import json
import re
import sqlite3
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import PureWindowsPath
from typing import Any, NamedTuple

import numpy as np
import shapely
from shapely import STRtree

from amberwatch.errors import InvalidInputError
from amberwatch.imagery.types import LngLatBbox
from amberwatch.results.places import describe_places
from amberwatch.results.records import Detection, ScanLayer, ScanParams
from amberwatch.results.store import get_detection, get_scan, query_detections


class ReviewState(NamedTuple):
    """A detection's review: the verdict of its latest accepted flag (None: not reviewed) and its pending flags."""

    verdict: str | None = None
    pending: int = 0

    @property
    def removed(self) -> bool:
        """A reviewer found it is not mining: no total counts it and nothing published shows it."""
        return self.verdict == "not_mining"

    @property
    def confirmed(self) -> bool:
        """A reviewer accepted a reader's "this is mining"."""
        return self.verdict == "confirmed"


NOT_REVIEWED = ReviewState()
FOLLOW_MIN_IOU = 0.5  # outlines of two dates this alike are the same place: the review holds for both
FOLLOW_MIN_INSIDE = 0.8  # or this share of the new outline lies inside the reviewed one
_FOLLOWED_VERDICTS = ("not_mining", "confirmed")
_ID_CHUNK = 500  # ids per IN (...) query, well under SQLite's limit of bound variables


@dataclass(frozen=True)
class InheritedReview:
    """Where an inherited review comes from: a decided detection of the same AOI at another imagery date."""

    detection_id: int
    scan_id: int
    imagery_date: str
    iou: float  # intersection over union of the two outlines

    def to_dict(self) -> dict[str, Any]:
        """The map's and the CLI's JSON of the source."""
        return {
            "detection_id": self.detection_id,
            "scan_id": self.scan_id,
            "imagery_date": self.imagery_date,
            "iou": round(self.iou, 3),
        }


@dataclass(frozen=True)
class PublicDetection:
    """A detection as anyone may see it (never the imagery's path or URL, nor the cache's)."""

    id: int
    scan_id: int
    geometry_geojson: str  # the stored GeoJSON geometry text, lon/lat
    bbox: LngLatBbox
    centroid_lon: float
    centroid_lat: float
    area_ha: float
    mean_prob: float
    max_prob: float
    capture_date: str | None
    model_version: str | None
    imagery_source_id: str  # the tile-cache key its imagery is served under (/tiles/{source_id}/...)
    zoom: int
    has_thumbnail: bool
    thumbnail: bytes | None  # the stored JPEG chip, when asked for
    review: ReviewState
    place: str | None  # "2.3 km NE of Klesiv"; None when no village is within 50 km, or not asked for
    review_from: InheritedReview | None = None  # set when the review is inherited from another date's detection

    @property
    def confirmed(self) -> bool:
        """A reviewer confirmed it is mining."""
        return self.review.confirmed

    @functools.cached_property
    def geometry(self) -> dict:
        """The outline as a GeoJSON geometry dict; InvalidInputError naming the detection when it is not GeoJSON."""
        try:
            return json.loads(self.geometry_geojson)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"detection {self.id}: geometry is not valid GeoJSON ({exc})") from exc

    def map_properties(self) -> dict[str, Any]:
        """The properties of the map's GeoJSON feature (rounded for the page)."""
        return {
            "id": self.id,
            "scan_id": self.scan_id,
            "area_ha": round(self.area_ha, 4),
            "mean_prob": round(self.mean_prob, 4),
            "max_prob": round(self.max_prob, 4),
            "capture_date": self.capture_date,
            "model_version": self.model_version,
            "lon": round(self.centroid_lon, 6),
            "lat": round(self.centroid_lat, 6),
            "review": self.review.verdict,
            "review_from": None if self.review_from is None else self.review_from.to_dict(),
            "pending": self.review.pending,
            "has_thumbnail": self.has_thumbnail,
            "place": self.place,
        }

    def feature_json(self) -> str:
        """The map's GeoJSON Feature as text."""
        # The stored geometry is already GeoJSON text: splice it in rather than parse 10,000 polygons.
        return (
            f'{{"type":"Feature","id":{self.id},'
            f'"geometry":{self.geometry_geojson},"properties":{json.dumps(self.map_properties())}}}'
        )


def public_detection(
    det: Detection, review: ReviewState, place: str | None, review_from: InheritedReview | None = None
) -> PublicDetection:
    """A detection as the public sees it, with its review state (inherited: from where) and place."""
    own = {f.name for f in fields(Detection)}
    kept = {f.name: getattr(det, f.name) for f in fields(PublicDetection) if f.name in own}
    return PublicDetection(**kept, review=review, place=place, review_from=review_from)


def public_detections(
    conn: sqlite3.Connection,
    reviews: Mapping[int, ReviewState],
    *,
    scan_id: int | None = None,
    ids: Sequence[int] | None = None,
    min_prob: float | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    order: str = "id",
    thumbnails: bool = False,
    places: bool = True,
    include_removed: bool = False,
) -> list[PublicDetection]:
    """Detections as ``query_detections`` filters and orders them, less the sites reviewers removed.

    ``reviews``: detection id -> ReviewState (``review.feedback.review_states``). ``places``: look up each place
    name (offline); ``include_removed``: keep the removed sites, marked by their review (for the map's grey ones).
    """
    rows = query_detections(
        conn, scan_id=scan_id, ids=ids, min_prob=min_prob, bbox=bbox, order=order, thumbnails=thumbnails
    )
    followed = follow_reviews(conn, rows, reviews)
    states = [followed.get(r.id, (reviews.get(r.id, NOT_REVIEWED), None)) for r in rows]
    kept = [(r, s) for r, s in zip(rows, states) if include_removed or not s[0].removed]
    names = describe_places((r.centroid_lon, r.centroid_lat) for r, _ in kept) if places else [None] * len(kept)
    return [public_detection(r, s, p, source) for (r, (s, source)), p in zip(kept, names)]


def get_public_detection(
    conn: sqlite3.Connection,
    detection_id: int,
    review: ReviewState,
    reviews: Mapping[int, ReviewState] | None = None,
) -> PublicDetection:
    """One detection with its place, whatever its review (the map shows removed sites greyed); else NotFoundError.

    ``reviews`` (all of them, ``review.feedback.review_states``): let an undecided detection inherit a review.
    """
    det = get_detection(conn, detection_id)
    (place,) = describe_places([(det.centroid_lon, det.centroid_lat)])
    review, source = follow_reviews(conn, [det], reviews or {}).get(det.id, (review, None))
    return public_detection(det, review, place, source)


def removed_totals(conn: sqlite3.Connection, reviews: Mapping[int, ReviewState]) -> dict[int, tuple[int, float]]:
    """Scan id -> (count, hectares) of its detections reviewed as not mining, directly or followed from another date."""
    decided = _decided_detections(conn, reviews)
    if not decided:
        return {}
    west, south, east, north = shapely.total_bounds(_outlines(decided)).tolist()
    out: dict[int, tuple[int, float]] = {}
    for det in public_detections(conn, reviews, bbox=(west, south, east, north), places=False, include_removed=True):
        if det.review.removed:
            count, hectares = out.get(det.scan_id, (0, 0.0))
            out[det.scan_id] = (count + 1, hectares + det.area_ha)
    return out


def follow_reviews(
    conn: sqlite3.Connection, rows: Sequence[Detection], reviews: Mapping[int, ReviewState]
) -> dict[int, tuple[ReviewState, InheritedReview]]:
    """Detection id -> (inherited state, its source) for the undecided ``rows`` matching a decided outline.

    One STRtree of the decided outlines, queried once with all candidate rows (same AOI, another imagery date).
    """
    undecided = [r for r in rows if reviews.get(r.id, NOT_REVIEWED).verdict is None]
    decided = _decided_detections(conn, reviews) if undecided else []
    if not decided:
        return {}
    places = _ScanPlaces(conn)
    sources = [d for d in decided if places.date(d.scan_id)]
    aois = {places.aoi(d.scan_id) for d in sources}
    targets = [r for r in undecided if places.date(r.scan_id) and places.aoi(r.scan_id) in aois]
    if not sources or not targets:
        return {}
    ti, si, iou = _matching_pairs(targets, sources, places)
    out: dict[int, tuple[ReviewState, InheritedReview]] = {}
    for k in np.argsort(-iou, kind="stable").tolist():  # the best-matching source first
        target, source = targets[ti[k]], sources[si[k]]
        if target.id not in out:
            state = ReviewState(reviews[source.id].verdict, reviews.get(target.id, NOT_REVIEWED).pending)
            date = str(places.date(source.scan_id))
            out[target.id] = (state, InheritedReview(source.id, source.scan_id, date, float(iou[k])))
    return out


def _matching_pairs(
    targets: Sequence[Detection], sources: Sequence[Detection], places: _ScanPlaces
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(target index, source index, IoU) of the pairs of the same AOI at different dates whose outlines match."""
    tg, sg = _outlines(targets), _outlines(sources)
    ti, si = STRtree(sg).query(tg, predicate="intersects")
    aoi_t, date_t = places.keys(targets)
    aoi_s, date_s = places.keys(sources)
    same_place = (aoi_t[ti] == aoi_s[si]) & (date_t[ti] != date_s[si])
    ti, si = ti[same_place], si[same_place]
    shared = shapely.area(shapely.intersection(tg[ti], sg[si]))
    area_t, area_s = shapely.area(tg[ti]), shapely.area(sg[si])
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.nan_to_num(shared / (area_t + area_s - shared))
        inside = np.nan_to_num(shared / area_t)
    ok = (shared > 0) & ((iou >= FOLLOW_MIN_IOU) | (inside >= FOLLOW_MIN_INSIDE))
    return ti[ok], si[ok], iou[ok]


def _decided_detections(conn: sqlite3.Connection, reviews: Mapping[int, ReviewState]) -> list[Detection]:
    """The detections whose own review has a verdict that follows the site."""
    ids = sorted(i for i, s in reviews.items() if s.verdict in _FOLLOWED_VERDICTS)
    return [d for k in range(0, len(ids), _ID_CHUNK) for d in query_detections(conn, ids=ids[k : k + _ID_CHUNK])]


def _outlines(dets: Sequence[Detection]) -> np.ndarray:
    """The detections' outlines as shapely geometries (invalid ones repaired)."""
    geoms = shapely.from_geojson(np.array([d.geometry_geojson for d in dets], dtype=object))
    return np.where(shapely.is_valid(geoms), geoms, shapely.make_valid(geoms))


class _ScanPlaces:
    """Each scan's AOI and imagery date, read once per scan."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.scans: dict[int, tuple[str, str | None]] = {}

    def _get(self, scan_id: int) -> tuple[str, str | None]:
        if scan_id not in self.scans:
            scan = get_scan(self.conn, scan_id)
            self.scans[scan_id] = (scan.aoi_geojson, scan.imagery_date)
        return self.scans[scan_id]

    def aoi(self, scan_id: int) -> str:
        """The scan's AOI as stored (GeoJSON text)."""
        return self._get(scan_id)[0]

    def date(self, scan_id: int) -> str | None:
        """The scan's imagery date (None: undated)."""
        return self._get(scan_id)[1]

    def keys(self, dets: Sequence[Detection]) -> tuple[np.ndarray, np.ndarray]:
        """Per detection its scan's AOI and date, as object arrays (compared elementwise)."""
        return (
            np.array([self.aoi(d.scan_id) for d in dets], dtype=object),
            np.array([self.date(d.scan_id) for d in dets], dtype=object),
        )


# Fields of a Scan that may be shown to anyone, in the layer's order; "imagery" (a path or URL) is not one of them.
PUBLIC_FIELDS = (
    "id",
    "imagery_source_id",
    "zoom",
    "model_version",
    "model_threshold",
    "parent_scan_id",
    "status",
    "started_at",
    "finished_at",
    "area_scanned_km2",
    "tiles_total",
    "tiles_done",
)
MAX_CREDIT_CHARS = 300
NO_CREDIT = "imagery provider not stated"
_FILE_SUFFIX = re.compile(r"\.(geo)?json$|\.gpkg$|\.shp$|\.kml$|\.tiff?$|\.mbtiles$", re.IGNORECASE)
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


def display_name(name: str | None, scan_id: int) -> str:
    """The scan's name as shown publicly: a path (or URL) becomes its file stem; no name gives 'scan ID'."""
    text = (name or "").strip()
    if _URL.match(text):
        text = text.split("?", 1)[0].rstrip("/")
    if "/" in text or "\\" in text or _FILE_SUFFIX.search(text):
        text = PureWindowsPath(text).stem  # PureWindowsPath splits on both / and \
    return text or f"scan {scan_id}"


@functools.lru_cache(maxsize=256)
def preset_attribution(imagery: str | None) -> str | None:
    """The plain-text attribution of an xyzservices preset name ('Esri.WorldImagery'), else None."""
    if not imagery or "/" in imagery or "\\" in imagery or "{" in imagery:
        return None
    from amberwatch.imagery.xyz import find_preset  # imports httpx: not for every page that lists layers

    provider = find_preset(imagery)
    if provider is None:
        return None
    text = provider.get("attribution") or provider.get("html_attribution")
    return str(text) if text else None


def stored_credit(params: ScanParams) -> str | None:
    """The credit given at scan time as clean one-line text, or None (missing, malformed or not a string)."""
    credit = " ".join((params.imagery_credit or "").split())[:MAX_CREDIT_CHARS]
    return credit or None


def imagery_credit(imagery: str | None, params: ScanParams, name: str) -> str:
    """The credit line of a scan's imagery: preset attribution, else the stored credit, else the attribution of the
    preset with the scan's URL template, else NO_CREDIT (``name`` is kept for callers: it is no credit)."""
    return preset_attribution(imagery) or stored_credit(params) or template_attribution(imagery) or NO_CREDIT


def credit_stated(imagery: str | None, params: ScanParams) -> bool:
    """Whether a scan's imagery provider is known (a preset, a stored credit, a preset's URL template)."""
    return imagery_credit(imagery, params, "") != NO_CREDIT


def _template_key(url: str) -> str:
    """A URL template reduced to what names its provider: no scheme, query, subdomain slot or retina suffix."""
    text = _URL.sub("", url.strip().lower()).split("?", 1)[0]
    text = re.sub(r"^(\{s\}|[a-d])\.", "", text)
    return text.replace("{r}", "")


@functools.lru_cache(maxsize=1)
def _preset_templates() -> dict[str, str]:
    """Every xyzservices preset's URL template key -> its plain-text attribution."""
    import xyzservices

    out: dict[str, str] = {}
    for provider in xyzservices.providers.flatten().values():
        text = provider.get("attribution") or provider.get("html_attribution")
        try:  # the template with its variant filled in; {x} {y} {z} and the subdomain slot kept
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # notices about a provider's terms: not ours to print
                url = provider.build_url(x="{x}", y="{y}", z="{z}", fill_subdomain=False)
        except (ValueError, KeyError, TypeError):
            continue  # a provider that needs an API key: not one a scan's template names without one
        if text:
            out.setdefault(_template_key(url), str(text))
    return out


@functools.lru_cache(maxsize=256)
def template_attribution(imagery: str | None) -> str | None:
    """The attribution of the preset whose URL template a scan's ``imagery`` is (keys and subdomains aside)."""
    if not imagery or not _URL.match(imagery.strip()):
        return None
    return _preset_templates().get(_template_key(imagery))


def scan_credit(conn: sqlite3.Connection, scan_id: int) -> str:
    """The public imagery credit of a scan (NotFoundError naming an unknown scan)."""
    scan = get_scan(conn, scan_id)
    return imagery_credit(scan.imagery, scan.params, display_name(scan.name, scan_id))


def public_layer(layer: ScanLayer) -> dict[str, Any]:
    """A scan layer as the JSON the public may see, with ``name``, ``imagery_credit`` and the detection totals."""
    out = {k: getattr(layer.scan, k) for k in PUBLIC_FIELDS} | {
        "detections": layer.detections,
        "hectares": layer.hectares,
    }
    out["name"] = display_name(layer.scan.name, layer.scan.id)
    out["imagery_credit"] = imagery_credit(layer.scan.imagery, layer.scan.params, out["name"])
    out["credit_stated"] = out["imagery_credit"] != NO_CREDIT
    return out


def without_removed(layer: dict[str, Any], removed: tuple[int, float]) -> dict[str, Any]:
    """The layer's totals less its sites reviewed as not mining, which are counted apart; the layer, updated."""
    count, hectares = removed
    layer["detections"] = max(0, int(layer.get("detections") or 0) - count)
    layer["hectares"] = max(0.0, float(layer.get("hectares") or 0.0) - hectares)
    layer["removed_after_review"] = count
    layer["removed_hectares"] = hectares
    return layer
