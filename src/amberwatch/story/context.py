"""Geographic context for the story map, offline: nearby place names from the gazetteer.

The locator inset is ``results.locator.locator_svg`` (shared with the live map and the static edition), drawn at
build time as an inline SVG, so the page loads nothing for it.
"""

from __future__ import annotations

from amberwatch.results.places import places_near
from amberwatch.results.public import PublicDetection

PLACE_RADIUS_KM = 12.0  # place names within this of a site are labelled on the map
MAX_PLACE_LABELS = 12


def place_labels(sites: list[PublicDetection]) -> list[dict]:
    """The few gazetteer places near the sites, as the map's labels: {"name", "latLng"}."""
    near = places_near(((s.centroid_lon, s.centroid_lat) for s in sites), PLACE_RADIUS_KM, MAX_PLACE_LABELS)
    return [{"name": p.name, "latLng": [round(p.lat_deg, 5), round(p.lon_deg, 5)]} for p in near]
