"""The map's view of a scan: its AOI's bounds, the lowest zoom its imagery is served at, and the basemap.

What the public may see of a scan (name, imagery credit, totals) is ``results.public``'s.
"""

from __future__ import annotations

import html
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
