"""What the public may see of the results: the one public projection of a detection, and scans as public layers.

A detection in public (``PublicDetection``) has its outline, hectares, scores, imagery date, review state and place
name; a site a reviewer found not mining (``ReviewState.removed``) is left out unless a caller asks for it (the map
draws such sites greyed). The review states come from ``review.feedback.review_states``, above this layer. The web
map, the exports and the story all take their detections from ``public_detections``.

A scan row holds where its imagery and cache lie on the scanning machine (paths, URL templates) and, for old
scans, the AOI path as the name. None of that is for the public: a layer shows a display name (a path-like name
reduced to its file stem) and a credit: the xyzservices attribution for a preset, else the credit given at scan
time (``ScanParams.imagery_credit``), else a neutral "Imagery: scan NAME". Layer totals count the sites a
reviewer has not removed; the removed ones are counted apart (``removed_after_review``, ``removed_hectares``).
"""

from __future__ import annotations

import functools
import json
import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import PureWindowsPath
from typing import Any, NamedTuple

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


def public_detection(det: Detection, review: ReviewState, place: str | None) -> PublicDetection:
    """A detection as the public sees it, with its review state and place."""
    kept = {f.name: getattr(det, f.name) for f in fields(PublicDetection) if f.name not in ("review", "place")}
    return PublicDetection(**kept, review=review, place=place)


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
    states = [reviews.get(r.id, NOT_REVIEWED) for r in rows]
    kept = [(r, s) for r, s in zip(rows, states) if include_removed or not s.removed]
    names = describe_places((r.centroid_lon, r.centroid_lat) for r, _ in kept) if places else [None] * len(kept)
    return [public_detection(r, s, p) for (r, s), p in zip(kept, names)]


def get_public_detection(conn: sqlite3.Connection, detection_id: int, review: ReviewState) -> PublicDetection:
    """One detection with its place, whatever its review (the map shows removed sites greyed); else NotFoundError."""
    det = get_detection(conn, detection_id)
    (place,) = describe_places([(det.centroid_lon, det.centroid_lat)])
    return public_detection(det, review, place)


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
    """The credit line of a scan's imagery: preset attribution, else the stored credit, else a neutral text."""
    return preset_attribution(imagery) or stored_credit(params) or f"Imagery: scan {name}"


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
    return out


def without_removed(layer: dict[str, Any], removed: tuple[int, float]) -> dict[str, Any]:
    """The layer's totals less its sites reviewed as not mining, which are counted apart; the layer, updated."""
    count, hectares = removed
    layer["detections"] = max(0, int(layer.get("detections") or 0) - count)
    layer["hectares"] = max(0.0, float(layer.get("hectares") or 0.0) - hectares)
    layer["removed_after_review"] = count
    layer["removed_hectares"] = hectares
    return layer
