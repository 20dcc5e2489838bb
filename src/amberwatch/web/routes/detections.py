"""Map data: scans, detections as GeoJSON, thumbnails and chips, cached imagery tiles, readers' feedback."""

from __future__ import annotations

import json
import math
import sqlite3

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict

from amberwatch.errors import InvalidInputError, NotFoundError
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.decode import encode_jpeg
from amberwatch.web.chips import detection_chip
from amberwatch.web.deps import get_cache, get_client, get_conn
from amberwatch.web.feedback import record_feedback

router = APIRouter()

_DETECTION_SQL = (
    "SELECT d.id, d.scan_id, d.geometry_geojson, d.centroid_lon, d.centroid_lat, d.area_ha, d.mean_prob, d.max_prob,"
    " d.capture_date, d.model_version, d.thumbnail IS NOT NULL AS has_thumbnail,"
    " (SELECT f.verdict FROM web_feedback f WHERE f.detection_id = d.id AND f.status = 'accepted'"
    "  ORDER BY f.reviewed_at DESC, f.id DESC LIMIT 1) AS review,"
    " (SELECT COUNT(*) FROM web_feedback f WHERE f.detection_id = d.id AND f.status = 'pending') AS pending"
    " FROM detections d"
)


class FeedbackIn(BaseModel):
    """A reader's verdict on a detection."""

    model_config = ConfigDict(extra="ignore")
    verdict: str
    category: str | None = None
    comment: str | None = None


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """'W,S,E,N' in degrees -> floats, or InvalidInputError naming the text."""
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError as exc:
        raise InvalidInputError(f"bbox {text!r} must be 'west,south,east,north' in degrees") from exc
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals) or vals[0] > vals[2] or vals[1] > vals[3]:
        raise InvalidInputError(f"bbox {text!r} must be 'west,south,east,north' in degrees with west<=east, south<=north")
    return vals  # type: ignore[return-value]


def _feature(row: sqlite3.Row) -> str:
    props = {
        "id": row["id"], "scan_id": row["scan_id"], "area_ha": round(row["area_ha"], 4),
        "mean_prob": round(row["mean_prob"], 4), "max_prob": round(row["max_prob"], 4),
        "capture_date": row["capture_date"], "model_version": row["model_version"],
        "lon": round(row["centroid_lon"], 6), "lat": round(row["centroid_lat"], 6),
        "review": row["review"], "pending": row["pending"], "has_thumbnail": bool(row["has_thumbnail"]),
    }
    # The stored geometry is already GeoJSON text: splice it in rather than parse 10,000 polygons.
    return f'{{"type":"Feature","id":{int(row["id"])},"geometry":{row["geometry_geojson"]},"properties":{json.dumps(props)}}}'


@router.get("/api/scans", summary="Scans (result layers) with model version and totals")
def list_scans(conn: sqlite3.Connection = Depends(get_conn)) -> dict:
    """Every scan, newest first, with its imagery source, model version, km² scanned and detection totals."""
    rows = conn.execute(
        "SELECT s.id, s.name, s.imagery, s.imagery_source_id, s.zoom, s.model_version, s.model_threshold,"
        " s.parent_scan_id, s.status, s.started_at, s.finished_at, s.area_scanned_km2, s.tiles_total, s.tiles_done,"
        " COUNT(d.id) AS detections, COALESCE(SUM(d.area_ha), 0) AS hectares,"
        " MIN(d.west) AS west, MIN(d.south) AS south, MAX(d.east) AS east, MAX(d.north) AS north"
        " FROM scans s LEFT JOIN detections d ON d.scan_id = s.id GROUP BY s.id ORDER BY s.id DESC"
    ).fetchall()
    scans = []
    for r in rows:
        s = dict(r)
        s["bounds"] = [s.pop(k) for k in ("west", "south", "east", "north")]
        if s["bounds"][0] is None:
            s["bounds"] = _aoi_bounds(conn, s["id"])
        scans.append(s)
    return {"scans": scans}


def _aoi_bounds(conn: sqlite3.Connection, scan_id: int) -> list[float] | None:
    row = conn.execute("SELECT aoi_geojson FROM scans WHERE id = ?", (scan_id,)).fetchone()
    try:
        from shapely.geometry import shape

        obj = json.loads(row["aoi_geojson"])
        if obj.get("type") == "FeatureCollection":
            obj = obj["features"][0]["geometry"]
        elif obj.get("type") == "Feature":
            obj = obj["geometry"]
        return list(shape(obj).bounds)
    except Exception:  # a malformed AOI only costs the map its initial view
        return None


@router.get("/api/detections", summary="Detections as a GeoJSON FeatureCollection")
def list_detections(
    scan: int | None = Query(None, description="scan id (all scans when omitted)"),
    min_prob: float | None = Query(None, ge=0.0, le=1.0, description="minimum mean probability"),
    bbox: str | None = Query(None, description="west,south,east,north in degrees: detections intersecting it"),
    conn: sqlite3.Connection = Depends(get_conn),
) -> Response:
    """Detections (polygons in lon/lat) with id, area in hectares, probabilities, date and review state."""
    where, args = [], []
    if scan is not None:
        if conn.execute("SELECT 1 FROM scans WHERE id = ?", (scan,)).fetchone() is None:
            raise NotFoundError(f"scan {scan!r} does not exist")
        where.append("d.scan_id = ?")
        args.append(scan)
    if min_prob is not None:
        where.append("d.mean_prob >= ?")
        args.append(min_prob)
    if bbox:
        w, s, e, n = parse_bbox(bbox)
        where.append("d.east >= ? AND d.west <= ? AND d.north >= ? AND d.south <= ?")
        args += [w, e, s, n]
    sql = _DETECTION_SQL + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY d.id"
    features = ",".join(_feature(r) for r in conn.execute(sql, args))
    return Response('{"type":"FeatureCollection","features":[' + features + "]}", media_type="application/geo+json")


@router.get("/api/detections/{detection_id}", summary="One detection as a GeoJSON Feature")
def get_detection(detection_id: int, conn: sqlite3.Connection = Depends(get_conn)) -> Response:
    """One detection with its review state."""
    row = conn.execute(_DETECTION_SQL + " WHERE d.id = ?", (detection_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"detection {detection_id!r} does not exist")
    return Response(_feature(row), media_type="application/geo+json")


@router.get("/api/detections/{detection_id}/thumbnail.jpg", summary="The detection's stored thumbnail chip",
            response_class=Response)
def detection_thumbnail(detection_id: int, conn: sqlite3.Connection = Depends(get_conn)) -> Response:
    """The JPEG thumbnail saved by the scan."""
    row = conn.execute("SELECT thumbnail FROM detections WHERE id = ?", (detection_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"detection {detection_id!r} does not exist")
    if row["thumbnail"] is None:
        raise NotFoundError(f"detection {detection_id!r} has no thumbnail")
    return Response(bytes(row["thumbnail"]), media_type="image/jpeg", headers={"cache-control": "public, max-age=3600"})


@router.get("/api/detections/{detection_id}/chip.jpg", summary="The detection rendered from cached imagery",
            response_class=Response)
def detection_chip_jpeg(detection_id: int, conn: sqlite3.Connection = Depends(get_conn),
                        cache: TileCache = Depends(get_cache)) -> Response:
    """The imagery around a detection from the tile cache (its thumbnail when the cache has none)."""
    return Response(encode_jpeg(detection_chip(conn, cache, detection_id)), media_type="image/jpeg")


@router.post("/api/detections/{detection_id}/feedback", status_code=201, summary="Flag a detection (readers)")
def post_feedback(detection_id: int, body: FeedbackIn, request: Request, conn: sqlite3.Connection = Depends(get_conn),
                  client: str = Depends(get_client)) -> dict:
    """Mark a detection 'not_mining' (with a category) or 'confirmed'; rate limited per client."""
    fb = record_feedback(conn, detection_id, body.verdict, body.category, body.comment, client=client,
                         limit_per_hour=request.app.state.feedback_limit_per_hour)
    fb.pop("client", None)
    return fb


@router.get("/tiles/{source_id}/{z}/{x}/{y}", summary="A cached imagery tile (404 when not cached)",
            response_class=Response)
def tile(source_id: str, z: int, x: int, y: str, cache: TileCache = Depends(get_cache)) -> Response:
    """An imagery tile the scan fetched, straight from the tile cache; never fetched from the network here."""
    y_num = y.rsplit(".", 1)[0] if "." in y else y
    if not y_num.isdigit():
        raise InvalidInputError(f"tile row {y!r} is not a number")
    row = cache.get(source_id, z, x, int(y_num))
    if row is None or row["status"] != "ok" or row["data"] is None:
        raise NotFoundError(f"tile {z}/{x}/{y_num} of source {source_id!r} is not in the cache")
    return Response(bytes(row["data"]), media_type=row["content_type"] or "image/png",
                    headers={"cache-control": "public, max-age=86400"})
