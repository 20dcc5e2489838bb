"""Geographic context for the story map, offline: nearby place names from the gazetteer and a small locator.

The locator's country outlines are Natural Earth's 1:110m countries (public domain) as shipped in the pyogrio
wheel, a dependency already (``pyogrio/tests/fixtures/naturalearth_lowres``). Where that file is missing the page
has no locator, with a warning. It is drawn at build time as an inline SVG, so the page loads nothing for it.
"""

from __future__ import annotations

import html
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

from amberwatch.errors import AmberwatchWarning
from amberwatch.imagery.types import LngLatBbox
from amberwatch.results.places import places_near
from amberwatch.results.public import PublicDetection

PLACE_RADIUS_KM = 12.0  # place names within this of a site are labelled on the map
MAX_PLACE_LABELS = 12
LOCATOR_WIDTH_PX = 120
LOCATOR_MARGIN = 0.12  # share of the country's extent shown around it
MIN_AOI_MARK_PX = 5.0


def place_labels(sites: list[PublicDetection]) -> list[dict]:
    """The few gazetteer places near the sites, as the map's labels: {"name", "latLng"}."""
    near = places_near(((s.centroid_lon, s.centroid_lat) for s in sites), PLACE_RADIUS_KM, MAX_PLACE_LABELS)
    return [{"name": p.name, "latLng": [round(p.lat_deg, 5), round(p.lon_deg, 5)]} for p in near]


def _outlines_file() -> Path | None:
    try:
        import pyogrio
    except ImportError:
        return None
    path = Path(pyogrio.__file__).parent / "tests" / "fixtures" / "naturalearth_lowres" / "naturalearth_lowres.shp"
    return path if path.is_file() else None


@dataclass(frozen=True)
class _Countries:
    names: list[str]
    geometries: list  # shapely geometries, lon/lat


def _countries() -> _Countries | None:
    path = _outlines_file()
    if path is None:
        return None
    import shapely
    from pyogrio.raw import read

    _, _, wkb, fields = read(path, columns=["name"])
    return _Countries([str(n) for n in fields[0]], list(shapely.from_wkb(wkb)))


@dataclass(frozen=True)
class _View:
    """Equirectangular pixels of a lon/lat window: x scaled by cos(latitude of its middle)."""

    west: float
    north: float
    kx: float
    ky: float

    def xy(self, lon: float, lat: float) -> tuple[float, float]:
        return (lon - self.west) * self.kx, (self.north - lat) * self.ky


def _path(geometry, view: _View) -> str:
    """SVG path data of a (multi)polygon's outer rings."""
    polys = getattr(geometry, "geoms", [geometry])
    parts = []
    for poly in polys:
        pts = [view.xy(lon, lat) for lon, lat in poly.exterior.coords]
        parts.append("M" + "L".join(f"{x:.1f},{y:.1f}" for x, y in pts) + "Z")
    return "".join(parts)


def locator_svg(sites_bbox: LngLatBbox) -> str:
    """An inset map: the country holding the sites among its neighbours, the sites' extent marked ("" without
    the outlines, with a warning)."""
    countries = _countries()
    if countries is None:
        warnings.warn(
            AmberwatchWarning("no offline country outlines (pyogrio's Natural Earth file): the map has no locator"),
            stacklevel=3,
        )
        return ""
    import shapely

    lon = (sites_bbox.west_deg + sites_bbox.east_deg) / 2
    lat = (sites_bbox.south_deg + sites_bbox.north_deg) / 2
    point = shapely.Point(lon, lat)
    home = min(range(len(countries.names)), key=lambda i: countries.geometries[i].distance(point))
    w, s, e, n = countries.geometries[home].bounds
    if e - w > 60 or n - s > 40:  # a vast country (or one across the antimeridian): a 30-degree window instead
        w, s, e, n = lon - 15, lat - 10, lon + 15, lat + 10
    dx, dy = (e - w) * LOCATOR_MARGIN, (n - s) * LOCATOR_MARGIN
    w, s, e, n = w - dx, s - dy, e + dx, n + dy
    cos_lat = math.cos(math.radians((s + n) / 2))
    k = LOCATOR_WIDTH_PX / ((e - w) * cos_lat)
    view = _View(w, n, k * cos_lat, k)
    height = (n - s) * k
    window = shapely.box(w, s, e, n)
    tolerance = (e - w) / 250
    land = []
    for i, geom in enumerate(countries.geometries):
        if i != home and geom.intersects(window):
            land.append(_path(geom.intersection(window).simplify(tolerance), view))
    x0, y0 = view.xy(sites_bbox.west_deg, sites_bbox.north_deg)
    x1, y1 = view.xy(sites_bbox.east_deg, sites_bbox.south_deg)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    mw, mh = max(x1 - x0, MIN_AOI_MARK_PX), max(y1 - y0, MIN_AOI_MARK_PX)
    name = html.escape(countries.names[home])
    return (
        f'<svg id="story-locator" class="locator" viewBox="0 0 {LOCATOR_WIDTH_PX} {height:.0f}" role="img" '
        f'aria-label="Locator map: the sites in {name}">'
        f'<path class="locator-land" d="{"".join(land)}"/>'
        f'<path class="locator-home" d="{_path(countries.geometries[home].simplify(tolerance), view)}"/>'
        f'<rect class="locator-aoi" x="{cx - mw / 2:.1f}" y="{cy - mh / 2:.1f}" width="{mw:.1f}" height="{mh:.1f}"/>'
        f"<title>{name}</title></svg>"
    )
