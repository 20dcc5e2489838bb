"""'More like this': the places of a scan most like some detections, and the chips of its tiles."""

from __future__ import annotations

import sqlite3

from fastapi import APIRouter, Depends, Query, Response

from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.decode import encode_jpeg
from amberwatch.results.places import describe_places
from amberwatch.results.store import get_scan
from amberwatch.review.chips import tile_view
from amberwatch.web.deps import get_cache, get_conn, get_vectors
from amberwatch.web.params import IdField, IdPath, TileIndexPath, ZoomPath
from amberwatch.web.similar import DEFAULT_TOP, MAX_TOP, VectorCache, similar_places, tile_chip_url

router = APIRouter()


@router.get("/api/similar", summary="The scanned places most like some detections (from tile embeddings)")
def similar(
    detection: list[IdField] = Query(..., description="detection id(s) to look like (their mean); the scan is theirs"),
    unlike: list[IdField] = Query([], description="detection id(s) of the same scan to look unlike"),
    top: int = Query(DEFAULT_TOP, ge=1, le=MAX_TOP, description="how many places"),
    conn: sqlite3.Connection = Depends(get_conn),
    vectors: VectorCache = Depends(get_vectors),
) -> dict:
    """Places best first (rank, lat, lon, score, tile, merged tiles, detection there, chip URL, ``place``: where it
    is in words, "2.3 km NE of Klesiv", null when no village is within 50 km).

    The detections themselves, their own tiles and their surroundings (~100 m) are left out; touching tiles are
    merged into one place.
    """
    scan_id, places = similar_places(conn, vectors, detection, unlike, top)
    names = describe_places((p.lon, p.lat) for p in places)
    return {
        "scan_id": scan_id,
        "places": [
            {**p.as_dict(), "chip_url": tile_chip_url(scan_id, p.tile), "place": name} for p, name in zip(places, names)
        ],
    }


@router.get(
    "/api/scans/{scan_id}/tiles/{z}/{x}/{y}/chip.jpg",
    summary="A tile of a scan with some context, from cached imagery",
    response_class=Response,
)
def tile_chip_jpeg(
    scan_id: IdPath,
    z: ZoomPath,
    x: TileIndexPath,
    y: TileIndexPath,
    conn: sqlite3.Connection = Depends(get_conn),
    cache: TileCache = Depends(get_cache),
) -> Response:
    """JPEG of the tile and a margin of its neighbours from the scan's imagery in the tile cache (404 when none);
    where no imagery is cached, a light checkerboard."""
    source_id = get_scan(conn, scan_id).imagery_source_id
    return Response(
        encode_jpeg(tile_view(cache, source_id, z, x, y)),
        media_type="image/jpeg",
        headers={"cache-control": "public, max-age=3600"},
    )
