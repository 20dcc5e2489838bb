"""The map's view of a scan: its AOI's bounds, the lowest zoom its imagery is served at, and the basemap.

What the public may see of a scan (name, imagery credit, totals) is ``results.public``'s.
"""

from __future__ import annotations

from amberwatch.imagery.aoi import aoi_bounds
from amberwatch.imagery.basemap import basemap_config

__all__ = ["aoi_bounds", "basemap_config", "overview_zoom"]  # the first two live in imagery (publish uses them)


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
