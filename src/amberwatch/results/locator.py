"""The one locator inset, offline: the country holding the sites among its neighbours, the sites' extent marked.

Drawn as an SVG by the story (inline), the live map (``GET /api/locator.svg``) and the static edition
(``locator.svg``). The country outlines are Natural Earth's 1:110m countries (public domain) as shipped in the
pyogrio wheel, a dependency already (``pyogrio/tests/fixtures/naturalearth_lowres``); where that file is missing
there is no locator (``locator_svg`` gives "" with a warning).

The projection is equirectangular (x scaled by the cosine of the window's middle latitude), so a page can place a
lon/lat on the drawing linearly from the window the SVG states in ``data-window`` (west,south,east,north).
"""

from __future__ import annotations

import functools
import html
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from amberwatch.errors import InvalidInputError, NoOutlinesWarning
from amberwatch.imagery.types import LngLatBbox

LOCATOR_WIDTH_PX = 120
LOCATOR_MARGIN = 0.12  # share of the country's extent shown around it
MIN_AOI_MARK_PX = 5.0
VAST_COUNTRY_DEG = (60.0, 40.0)  # wider or taller (or across the antimeridian): a 30 x 20 degree window instead


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


@functools.lru_cache(maxsize=1)
def _countries() -> _Countries | None:
    path = _outlines_file()
    if path is None:
        return None
    import shapely
    from pyogrio.raw import read

    _, _, wkb, fields = read(path, columns=["name"])
    return _Countries([str(n) for n in fields[0]], list(shapely.from_wkb(wkb)))


def outlines_available() -> bool:
    """Whether the offline country outlines can be read (else no locator is drawn)."""
    return _countries() is not None


def union_bbox(boxes: Iterable[LngLatBbox]) -> LngLatBbox:
    """The box around all the boxes (at least one)."""
    boxes = list(boxes)
    if not boxes:
        raise InvalidInputError("no boxes to join: the locator needs at least one site")
    return LngLatBbox(
        min(b.west_deg for b in boxes),
        min(b.south_deg for b in boxes),
        max(b.east_deg for b in boxes),
        max(b.north_deg for b in boxes),
    )


@dataclass(frozen=True)
class _View:
    """Equirectangular pixels of a lon/lat window: x scaled by cos(latitude of its middle)."""

    west: float
    south: float
    east: float
    north: float
    kx: float
    ky: float

    def xy(self, lon: float, lat: float) -> tuple[float, float]:
        return (lon - self.west) * self.kx, (self.north - lat) * self.ky

    @property
    def height_px(self) -> float:
        return (self.north - self.south) * self.ky


def _path(geometry, view: _View) -> str:
    """SVG path data of a (multi)polygon's outer rings."""
    polys = getattr(geometry, "geoms", [geometry])
    parts = []
    for poly in polys:
        if poly.is_empty or not hasattr(poly, "exterior"):
            continue
        pts = [view.xy(lon, lat) for lon, lat in poly.exterior.coords]
        parts.append("M" + "L".join(f"{x:.1f},{y:.1f}" for x, y in pts) + "Z")
    return "".join(parts)


def _home_view(home_bounds: tuple[float, float, float, float], lon: float, lat: float) -> _View:
    """The window around the home country (a fixed one around the sites for a vast country), with its scales."""
    w, s, e, n = home_bounds
    if e - w > VAST_COUNTRY_DEG[0] or n - s > VAST_COUNTRY_DEG[1]:
        w, s, e, n = lon - 15, lat - 10, lon + 15, lat + 10
    dx, dy = (e - w) * LOCATOR_MARGIN, (n - s) * LOCATOR_MARGIN
    w, s, e, n = max(w - dx, -180.0), max(s - dy, -90.0), min(e + dx, 180.0), min(n + dy, 90.0)
    cos_lat = max(math.cos(math.radians((s + n) / 2)), 0.2)
    k = LOCATOR_WIDTH_PX / ((e - w) * cos_lat)
    return _View(w, s, e, n, k * cos_lat, k)


def _aoi_rect(sites_bbox: LngLatBbox, view: _View) -> str:
    """The sites' extent as a rectangle, at least MIN_AOI_MARK_PX on a side so it shows."""
    x0, y0 = view.xy(sites_bbox.west_deg, sites_bbox.north_deg)
    x1, y1 = view.xy(sites_bbox.east_deg, sites_bbox.south_deg)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    mw, mh = max(x1 - x0, MIN_AOI_MARK_PX), max(y1 - y0, MIN_AOI_MARK_PX)
    return f'<rect class="locator-aoi" x="{cx - mw / 2:.1f}" y="{cy - mh / 2:.1f}" width="{mw:.1f}" height="{mh:.1f}"/>'


def locator_svg(sites_bbox: LngLatBbox, svg_id: str = "locator-map") -> str:
    """An inset map: the country holding the sites among its neighbours, the sites' extent marked, named in its
    ``aria-label`` ("" without the outlines, with a ``NoOutlinesWarning``)."""
    countries = _countries()
    if countries is None:
        why = "no offline country outlines (pyogrio's Natural Earth file): no locator"
        warnings.warn(NoOutlinesWarning(why), stacklevel=2)
        return ""
    import shapely

    lon, lat = sites_bbox.center_deg
    point = shapely.Point(lon, lat)
    home = min(range(len(countries.names)), key=lambda i: countries.geometries[i].distance(point))
    view = _home_view(countries.geometries[home].bounds, lon, lat)
    window = shapely.box(view.west, view.south, view.east, view.north)
    tolerance = (view.east - view.west) / 250
    land = [
        _path(geom.intersection(window).simplify(tolerance), view)
        for i, geom in enumerate(countries.geometries)
        if i != home and geom.intersects(window)
    ]
    home_path = _path(countries.geometries[home].intersection(window).simplify(tolerance), view)
    name = html.escape(countries.names[home])
    data_window = ",".join(f"{v:.5f}" for v in (view.west, view.south, view.east, view.north))
    return (
        f'<svg id="{html.escape(svg_id)}" class="locator-map" '
        f'viewBox="0 0 {LOCATOR_WIDTH_PX} {view.height_px:.0f}" data-window="{data_window}" role="img" '
        f'aria-label="Locator map: the sites in {name}">'
        f"<title>{name}</title>"
        f'<path class="locator-land" d="{"".join(land)}"/>'
        f'<path class="locator-home" d="{home_path}"/>'
        f"{_aoi_rect(sites_bbox, view)}</svg>"
    )


SVG_NS = "http://www.w3.org/2000/svg"


def locator_document(sites: Iterable[LngLatBbox]) -> str | None:
    """The locator of the sites' extent as a standalone SVG file (the map's ``/api/locator.svg``, an edition's
    ``locator.svg``), or None when there are no sites or no outlines."""
    boxes = list(sites)
    if not boxes or not outlines_available():
        return None
    svg = locator_svg(union_bbox(boxes))
    return svg.replace("<svg ", f'<svg xmlns="{SVG_NS}" ', 1) + "\n"
