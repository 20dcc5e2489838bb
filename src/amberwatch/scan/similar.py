"""`amberwatch similar`: the scanned places most like some detections, points or image files.

Detections and points are looked up in the scan's own tile embeddings; an image file is embedded by the
model the scan used, so every query lives in the same space as the tiles (``results.similar``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amberwatch.errors import AmberwatchError, InvalidInputError, ModelError
from amberwatch.imagery.decode import read_image_file
from amberwatch.model.modelfile import load as load_model
from amberwatch.model.registry import ModelRegistry
from amberwatch.project import Project
from amberwatch.results.similar import (
    DEFAULT_EXCLUDE_M,
    Place,
    build_query,
    load_scan_vectors,
    rank_places,
)
from amberwatch.results.store import SCHEMA as RESULTS_SCHEMA
from amberwatch.results.store import get_scan


@dataclass(frozen=True)
class SimilarRequest:
    """What `amberwatch similar` looks for: the queries to be like and unlike, how many places, what to skip."""

    scan_id: int
    detections: Sequence[int] = ()
    images: Sequence[str] = ()
    points: Sequence[tuple[float, float]] = ()  # (lat, lon) in degrees
    unlike: Sequence[int] = ()  # detection ids
    top: int = 10
    exclude_m: float = DEFAULT_EXCLUDE_M


def parse_point(text: str) -> tuple[float, float]:
    """'LAT,LON' in degrees -> (lat, lon), or InvalidInputError naming the text."""
    try:
        lat, lon = (float(v) for v in text.split(","))
    except ValueError:
        raise InvalidInputError(f"point {text!r} must be 'LAT,LON' in degrees, e.g. 51.32,26.91") from None
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise InvalidInputError(f"point {text!r} is outside latitude -90..90 / longitude -180..180")
    return lat, lon


def find_similar(db: Project | str | os.PathLike[str], request: SimilarRequest) -> list[Place]:
    """The request's top places in its scan, best first (errors name the bad query)."""
    if not (request.detections or request.images or request.points):
        raise InvalidInputError("give at least one query: --detection ID, --image FILE or --at LAT,LON")
    with Project.using(db, create=False) as project:
        project.migrate(RESULTS_SCHEMA)
        conn = project.conn
        vectors = load_scan_vectors(conn, request.scan_id)
        images = _embed_images(project, request.scan_id, request.images) if request.images else None
        query = build_query(conn, vectors, request.detections, request.unlike, points=request.points, embedded=images)
        return rank_places(conn, vectors, query, top=request.top, exclude_m=request.exclude_m)


def _embed_images(project: Project, scan_id: int, images: Sequence[str]) -> np.ndarray:
    """Embeddings of image files (at the examples' resolution) by the model the scan used."""
    scan = get_scan(project.conn, scan_id)
    model_path = scan.params.model_path
    if model_path and Path(model_path).exists():
        model = load_model(model_path)
    else:
        model = project.store(ModelRegistry).load(scan.model_version)
    if not getattr(model, "embedding_dims", 0):
        raise ModelError(f"model v{scan.model_version} of scan {scan_id} has no embedding to compare images with")
    chips = []
    for name in images:
        try:
            chips.append(read_image_file(name))
        except AmberwatchError as exc:
            raise InvalidInputError(f"query image {name!r}: {exc}") from exc
    return model.embed_chips(chips).astype(np.float16)


def places_geojson(places: Sequence[Place]) -> dict:
    """The places as a GeoJSON FeatureCollection of points (RFC 7946)."""
    return {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [p.lon, p.lat]}, "properties": p.as_dict()}
            for p in places
        ],
    }
