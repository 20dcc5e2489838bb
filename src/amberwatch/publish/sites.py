"""The sites and place labels of the static edition as GeoJSON: the public projection (``results.public``), as the
live map gets it from ``/api/detections`` less the sites reviewers rejected, and the gazetteer's places near them.

A dated scan's sites also carry the timeline's ``site_id`` and ``status`` (new, growing, ...), so the viewer can
follow a site over the dates as the live map does with ``/api/timeline``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from amberwatch.results.places import places_near
from amberwatch.results.public import PublicDetection, ReviewState, public_detections
from amberwatch.results.timeline import Site, Timeline

PLACE_RADIUS_KM = 12.0  # the story map's radius (story.context): places this near a site are labelled
MAX_PLACE_LABELS = 40  # a static map pans and zooms over the whole area: more labels than the story's fixed view


@dataclass(frozen=True)
class SiteLayer:
    """One scan's public sites: the GeoJSON text and what the config says of them."""

    scan_id: int
    sites: tuple[PublicDetection, ...]
    geojson: str

    @property
    def hectares(self) -> float:
        """Total hectares of the sites shown."""
        return sum(s.area_ha for s in self.sites)


def timeline_sites(timeline: Timeline | None) -> dict[int, Site]:
    """Detection id -> the timeline site it belongs to (empty without a timeline)."""
    if timeline is None:
        return {}
    return {det_id: site for site in timeline.sites for det_id in site.detection_ids}


def site_feature(det: PublicDetection, site: Site | None) -> str:
    """The map's GeoJSON feature of a site (no thumbnail: a static host serves none), with its timeline site."""
    props = det.map_properties() | {"has_thumbnail": False}
    if site is not None:
        props |= {"site_id": site.site_id, "status": site.status}
    return f'{{"type":"Feature","id":{det.id},"geometry":{det.geometry_geojson},"properties":{json.dumps(props)}}}'


def site_layer(
    conn: sqlite3.Connection,
    reviews: Mapping[int, ReviewState],
    scan_id: int,
    credit: str,
    imagery_date: str | None,
    timeline: Timeline | None = None,
) -> SiteLayer:
    """A scan's public sites (rejected ones out, followed reviews in, place names) as a FeatureCollection whose
    foreign members name the scan, its imagery credit and date."""
    sites = public_detections(conn, reviews, scan_id=scan_id)
    by_detection = timeline_sites(timeline)
    features = ",".join(site_feature(d, by_detection.get(d.id)) for d in sites)
    head = json.dumps({"scan_id": scan_id, "imagery_credit": credit, "imagery_date": imagery_date})[1:-1]
    text = f'{{"type":"FeatureCollection",{head},"features":[{features}]}}'
    return SiteLayer(scan_id, tuple(sites), text)


def places_geojson(points: Sequence[tuple[float, float]]) -> dict:
    """The gazetteer's places near the (lon, lat) points (the sites, or the area's centre without any) as GeoJSON
    points with their names, nearest to a point first."""
    near = places_near(points, PLACE_RADIUS_KM, MAX_PLACE_LABELS)
    features = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [round(p.lon_deg, 5), round(p.lat_deg, 5)]},
            "properties": {"name": p.name},
        }
        for p in near
    ]
    return {"type": "FeatureCollection", "features": features}
