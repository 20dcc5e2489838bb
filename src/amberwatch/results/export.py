"""Export detections to GeoJSON (RFC 7946), GeoPackage, CSV with WKT, or KML.

An export is published: it holds the public detections (``results.public``), never a site reviewed as not mining.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon, mapping, shape
from shapely.geometry.base import BaseGeometry

from amberwatch.db import writing
from amberwatch.errors import InvalidInputError
from amberwatch.results.detections import orient_ccw
from amberwatch.results.public import ReviewState, public_detections

FORMATS = ("geojson", "gpkg", "csv", "kml")
PROPERTIES = ("id", "scan_id", "area_ha", "mean_prob", "max_prob", "capture_date", "model_version")
COORD_DECIMALS = 7  # ~1 cm: finer than any imagery we read


def load_detections(conn: sqlite3.Connection, scan_id: int | None, reviews: Mapping[int, ReviewState]) -> list[dict]:
    """Public detections (of one scan, or all when None; none reviewed as not mining) as dicts with a shapely
    ``geometry``; ``reviews`` as ``review.feedback.review_states`` gives them."""
    out = []
    for det in public_detections(conn, reviews, scan_id=scan_id, places=False):
        item = {k: getattr(det, k) for k in PROPERTIES}
        item["centroid_lon"], item["centroid_lat"] = det.centroid_lon, det.centroid_lat
        item["geometry"] = orient_ccw(shape(det.geometry))
        out.append(item)
    return out


def _rounded(geometry: BaseGeometry) -> BaseGeometry:
    return orient_ccw(shapely.set_precision(geometry, 10.0**-COORD_DECIMALS, mode="pointwise"))


def to_geojson(detections: list[dict]) -> dict:
    """A FeatureCollection in lon/lat, CCW exteriors, no ``crs`` member, ``area_ha`` on every feature."""
    features = [
        {
            "type": "Feature",
            "id": det["id"],
            "geometry": mapping(_rounded(det["geometry"])),
            "properties": {k: det[k] for k in PROPERTIES},
        }
        for det in detections
    ]
    return {"type": "FeatureCollection", "features": features}


def write_geojson(detections: list[dict], path: Path) -> None:
    """Write RFC 7946 GeoJSON."""
    path.write_text(json.dumps(to_geojson(detections), separators=(",", ":")), encoding="utf-8")


def write_csv(detections: list[dict], path: Path) -> None:
    """Write CSV: the properties, the centroid and the geometry as WKT (lon/lat)."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow([*PROPERTIES, "centroid_lon", "centroid_lat", "wkt"])
        for det in detections:
            wkt = shapely.to_wkt(_rounded(det["geometry"]), rounding_precision=COORD_DECIMALS, trim=True)
            writer.writerow([*(det[k] for k in PROPERTIES), det["centroid_lon"], det["centroid_lat"], wkt])


def _kml_ring(coords) -> str:
    text = " ".join(f"{x:.{COORD_DECIMALS}f},{y:.{COORD_DECIMALS}f},0" for x, y in coords)
    return f"<LinearRing><coordinates>{text}</coordinates></LinearRing>"


def _kml_polygon(poly: Polygon) -> str:
    inner = "".join(f"<innerBoundaryIs>{_kml_ring(r.coords)}</innerBoundaryIs>" for r in poly.interiors)
    return f"<Polygon><outerBoundaryIs>{_kml_ring(poly.exterior.coords)}</outerBoundaryIs>{inner}</Polygon>"


def write_kml(detections: list[dict], path: Path) -> None:
    """Write a simple KML 2.2 document: one Placemark per detection with ExtendedData."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<kml xmlns="http://www.opengis.net/kml/2.2"><Document>',
        "<name>amberwatch detections</name>",
    ]
    for det in detections:
        geom = det["geometry"]
        polys = list(geom.geoms) if isinstance(geom, MultiPolygon) else [geom]
        body = "".join(_kml_polygon(p) for p in polys)
        if len(polys) > 1:
            body = f"<MultiGeometry>{body}</MultiGeometry>"
        data = "".join(
            f'<Data name="{k}"><value>{escape("" if det[k] is None else str(det[k]))}</value></Data>'
            for k in PROPERTIES
        )
        parts.append(
            f"<Placemark><name>detection {det['id']}</name>"
            f"<description>{det['area_ha']:.2f} ha, max P {det['max_prob']:.2f}</description>"
            f"<ExtendedData>{data}</ExtendedData>{body}</Placemark>"
        )
    parts.append("</Document></kml>")
    path.write_text("\n".join(parts), encoding="utf-8")


def write_gpkg(detections: list[dict], path: Path) -> None:
    """Write a GeoPackage layer 'detections' (MultiPolygon, EPSG:4326) with pyogrio."""
    import pyogrio.raw

    if path.exists():
        path.unlink()
    geoms = [g if isinstance(g, MultiPolygon) else MultiPolygon([g]) for g in (d["geometry"] for d in detections)]
    wkb = np.array([shapely.to_wkb(g) for g in geoms], dtype=object)
    fields = list(PROPERTIES)
    field_data = [
        np.array([d["id"] for d in detections], dtype=np.int64),
        np.array([d["scan_id"] for d in detections], dtype=np.int64),
        np.array([d["area_ha"] for d in detections], dtype=np.float64),
        np.array([d["mean_prob"] for d in detections], dtype=np.float64),
        np.array([d["max_prob"] for d in detections], dtype=np.float64),
        np.array([d["capture_date"] or "" for d in detections], dtype=object),
        np.array([d["model_version"] for d in detections], dtype=object),
    ]
    pyogrio.raw.write(
        str(path),
        wkb,
        field_data,
        fields,
        layer="detections",
        driver="GPKG",
        geometry_type="MultiPolygon",
        crs="EPSG:4326",
    )


def export_detections(
    conn: sqlite3.Connection,
    fmt: str,
    out: str | os.PathLike[str],
    *,
    reviews: Mapping[int, ReviewState],
    scan_id: int | None = None,
) -> int:
    """Write the public detections in a format to a file; returns how many were written.

    ``reviews`` (``review.feedback.review_states``) names the sites reviewed as not mining, which are left out.
    """
    fmt = fmt.lower()
    writers = {"geojson": write_geojson, "gpkg": write_gpkg, "csv": write_csv, "kml": write_kml}
    if fmt not in writers:
        raise InvalidInputError(f"export format {fmt!r} is not one of {', '.join(FORMATS)}")
    path = Path(out)
    if path.parent and not path.parent.exists():
        raise InvalidInputError(f"output folder {str(path.parent)!r} does not exist")
    detections = load_detections(conn, scan_id, reviews)
    with writing(path, "export file"):
        writers[fmt](detections, path)
    return len(detections)
