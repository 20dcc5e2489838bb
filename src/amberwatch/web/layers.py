"""The map's view of a scan: its AOI's bounds, the lowest zoom its imagery is served at, and the basemap.

What the public may see of a scan (name, imagery credit, totals) is ``results.public``'s.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any


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


def basemap_config(name: str) -> dict[str, Any]:
    """The map's config of basemap preset ``name`` (``imagery.basemap.resolve_basemap``): name, Leaflet URL template,
    subdomains, max zoom, HTML attribution and the origin the page must be allowed to load images from.

    InvalidInputError naming the preset when it is unknown, needs an API key or has no http(s) tile URL.
    """
    from amberwatch.errors import InvalidInputError
    from amberwatch.imagery.basemap import LEAFLET_SUBDOMAINS, resolve_basemap

    basemap = resolve_basemap(name)
    url = basemap.url.replace("{r}", "")  # the map asks for standard-resolution tiles
    origin = re.match(r"^https?://[^/]+", url)
    if origin is None:
        raise InvalidInputError(f"basemap {name!r} has no http(s) tile URL ({url!r})")
    return {
        "name": basemap.name,
        "url": url,
        "subdomains": basemap.subdomains or LEAFLET_SUBDOMAINS,
        "max_zoom": 19 if basemap.max_zoom is None else basemap.max_zoom,
        "attribution": basemap.attribution_html,
        "origin": origin.group(0).replace("{s}", "*"),
    }
