"""Scans as the public sees them (the map's layer list and attribution): a name and an imagery credit.

A scan row holds where its imagery and cache lie on the scanning machine (paths, URL templates) and, for old
scans, the AOI path as the name. None of that is for the public: a layer shows a display name (a path-like name
reduced to its file stem) and a credit: the xyzservices attribution for a preset, else the credit given at scan
time (``params_json["imagery_credit"]``), else a neutral "Imagery: scan NAME".

Totals count the sites a reviewer has not removed (confirmed and unreviewed ones); the removed ones are counted
apart (``removed_after_review``, ``removed_hectares``).
"""

from __future__ import annotations

import functools
import html
import json
import math
import re
from pathlib import PureWindowsPath
from typing import Any

# Fields of results.store.scan_layers that may be shown to anyone; "imagery" (a path or URL) is not one of them.
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
    "detections",
    "hectares",
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


def stored_credit(params_json: str | None) -> str | None:
    """``params_json["imagery_credit"]`` as clean one-line text, or None (missing, malformed or not a string)."""
    try:
        params = json.loads(params_json or "{}")
    except (TypeError, ValueError):
        return None
    credit = params.get("imagery_credit") if isinstance(params, dict) else None
    if not isinstance(credit, str):
        return None
    credit = " ".join(credit.split())[:MAX_CREDIT_CHARS]
    return credit or None


def imagery_credit(imagery: str | None, params_json: str | None, name: str) -> str:
    """The credit line of a scan's imagery: preset attribution, else the stored credit, else a neutral text."""
    return preset_attribution(imagery) or stored_credit(params_json) or f"Imagery: scan {name}"


def public_layer(layer: dict[str, Any], params_json: str | None) -> dict[str, Any]:
    """A ``scan_layers`` row reduced to what the public may see, with ``name`` and ``imagery_credit``."""
    out = {k: layer.get(k) for k in PUBLIC_FIELDS}
    out["name"] = display_name(layer.get("name"), int(layer["id"]))
    out["imagery_credit"] = imagery_credit(layer.get("imagery"), params_json, out["name"])
    return out


def without_removed(layer: dict[str, Any], removed: tuple[int, float]) -> dict[str, Any]:
    """The layer's totals less its sites reviewed as not mining, which are counted apart; the layer, updated."""
    count, hectares = removed
    layer["detections"] = max(0, int(layer.get("detections") or 0) - count)
    layer["hectares"] = max(0.0, float(layer.get("hectares") or 0.0) - hectares)
    layer["removed_after_review"] = count
    layer["removed_hectares"] = hectares
    return layer


def aoi_bounds(aoi_geojson: str | None) -> list[float] | None:
    """[west, south, east, north] of a scan's AOI (GeoJSON geometry, Feature or FeatureCollection), else None."""
    from shapely.geometry import shape

    try:
        obj = json.loads(aoi_geojson or "")
        if obj.get("type") == "FeatureCollection":
            obj = obj["features"][0]["geometry"]
        elif obj.get("type") == "Feature":
            obj = obj["geometry"]
        bounds = [float(v) for v in shape(obj).bounds]
    except Exception:  # a malformed AOI only costs the map its initial view and overviews
        return None
    return bounds if len(bounds) == 4 and all(math.isfinite(v) for v in bounds) else None


def overview_zoom(zoom: int | None, bounds: list[float] | None) -> int | None:
    """The lowest zoom the map may ask the scan's imagery at (overview tiles), or None without a zoom."""
    from amberwatch.errors import InvalidInputError
    from amberwatch.imagery.overview import overview_min_zoom
    from amberwatch.imagery.types import LngLatBbox

    if zoom is None:
        return None
    try:
        box = LngLatBbox(*bounds) if bounds else None
    except InvalidInputError:
        box = None
    return overview_min_zoom(int(zoom), box)


def resolve_basemap(name: str) -> dict[str, Any]:
    """An xyzservices preset ('OpenStreetMap.Mapnik') as the map's basemap config: name, Leaflet URL template,
    subdomains, max zoom, HTML attribution and the origin the page must be allowed to load images from.

    InvalidInputError naming the preset when it is unknown or needs an API key.
    """
    from amberwatch.errors import InvalidInputError
    from amberwatch.imagery.xyz import basemap_preset

    provider = basemap_preset(name)
    url = provider.build_url(fill_subdomain=False, scale_factor="")
    origin = re.match(r"^https?://[^/]+", url)
    if origin is None:
        raise InvalidInputError(f"basemap {name!r} has no http(s) tile URL ({url!r})")
    attribution = provider.get("html_attribution") or html.escape(str(provider.get("attribution") or name))
    return {
        "name": provider.name,
        "url": url,
        "subdomains": provider.get("subdomains", "abc"),
        "max_zoom": int(provider.get("max_zoom", 19)),
        "attribution": str(attribution),
        "origin": origin.group(0).replace("{s}", "*"),
    }
