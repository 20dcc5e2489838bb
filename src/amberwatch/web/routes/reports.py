"""Missed-site reports: a reader marks a point where the map missed mining; reviewers accept or reject it.

An accepted report becomes a mining example (``review.feedback.decide_report``) and the point's 8 neighbouring tiles
go to the labelling queue (source ``report``), those the scan covers.
"""

from __future__ import annotations

import sqlite3

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict

from amberwatch.errors import NotFoundError
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.decode import encode_jpeg
from amberwatch.results.store import get_scan
from amberwatch.review.chips import point_view
from amberwatch.review.feedback import (
    decide_report,
    get_report,
    list_reports,
    record_report,
    reports_summary,
    undo_report_decision,
)
from amberwatch.web.deps import get_cache, get_client, get_conn, get_reader, get_reviewer
from amberwatch.web.labelling import queue_tiles
from amberwatch.web.params import IdPath, Text
from amberwatch.web.users import User

router = APIRouter()
QUEUE_SOURCE = "report"


class ReportIn(BaseModel):
    """A reader's report of mining the map missed."""

    model_config = ConfigDict(extra="ignore")
    lon: float
    lat: float
    note: Text | None = None
    imagery_date: Text | None = None  # the date of the map layer the reader looked at (the scan's)


@router.post("/api/scans/{scan_id}/reports", status_code=201, summary="Report mining the map missed (readers)")
def post_report(
    scan_id: IdPath,
    body: ReportIn,
    request: Request,
    conn: sqlite3.Connection = Depends(get_conn),
    cache: TileCache = Depends(get_cache),
    client: str = Depends(get_client),
    reader: str = Depends(get_reader),
) -> dict:
    """A point (lon, lat) on the scan's layer and an optional note; 422 outside the scan's area or where no imagery
    is cached; limited with the reader's flags. Their pending report within 50 m is replaced (``replaced``)."""
    return record_report(
        conn,
        cache,
        scan_id,
        (body.lon, body.lat),
        body.note,
        client=client,
        reader=reader,
        limits=request.app.state.feedback_limits,
        imagery_date=body.imagery_date,
    )


@router.get("/api/reports", summary="Missed-site reports (reviewers)")
def reports_queue(
    status: str = Query("pending", description="pending | accepted | rejected | superseded | all"),
    limit: int = Query(500, ge=1, le=5000),
    conn: sqlite3.Connection = Depends(get_conn),
    user: User = Depends(get_reviewer),
) -> dict:
    """Reports with a status, oldest first: point, layer, note, place and the URL of the view around the point."""
    reports = list_reports(conn, None if status == "all" else status, limit=limit)
    return {"reports": reports, "count": len(reports), "pending": reports_summary(conn)}


@router.get(
    "/api/reports/{report_id}/chip.jpg",
    summary="The imagery around a reported point (reviewers)",
    response_class=Response,
)
def report_chip(
    report_id: IdPath,
    conn: sqlite3.Connection = Depends(get_conn),
    cache: TileCache = Depends(get_cache),
    user: User = Depends(get_reviewer),
) -> Response:
    """At least 256 native pixels a side centred on the point, from the tile cache, the point ringed. Reviewers only:
    where a reader reported (perhaps near where they live) is not public."""
    report = get_report(conn, report_id)
    scan = get_scan(conn, report["scan_id"])
    pixels = point_view(cache, scan.imagery_source_id, scan.zoom, report["lon"], report["lat"])
    return Response(encode_jpeg(pixels), media_type="image/jpeg", headers={"cache-control": "no-cache"})


@router.post("/api/reports/{report_id}/accept", summary="Accept a report: a mining example, its tiles queued")
def accept_report(
    report_id: IdPath,
    conn: sqlite3.Connection = Depends(get_conn),
    cache: TileCache = Depends(get_cache),
    user: User = Depends(get_reviewer),
) -> dict:
    """The report becomes a mining example (source 'review'); its neighbouring tiles join the labelling queue."""
    result = decide_report(conn, cache, report_id, "accept", user.name)
    result["queued"] = _queue_neighbours(conn, result["scan_id"], result.pop("tiles"), user.name)
    return result


def _queue_neighbours(conn: sqlite3.Connection, scan_id: int, tiles: list[str], user: str) -> list[str]:
    """Queue each tile the scan covers for labelling; return the queued keys."""
    keys = []
    for tile in tiles:
        try:
            keys += queue_tiles(conn, scan_id, [tile], source=QUEUE_SOURCE, user=user)["keys"]
        except NotFoundError:
            continue  # a tile outside the scan's area
    return keys


@router.post("/api/reports/{report_id}/reject", summary="Reject a report")
def reject_report(
    report_id: IdPath,
    conn: sqlite3.Connection = Depends(get_conn),
    cache: TileCache = Depends(get_cache),
    user: User = Depends(get_reviewer),
) -> dict:
    """The report is kept as rejected and changes nothing (409 when it was decided meanwhile)."""
    result = decide_report(conn, cache, report_id, "reject", user.name)
    result.pop("tiles")
    return result


@router.post("/api/reports/{report_id}/undo", summary="Undo a decision on a report")
def undo_report(
    report_id: IdPath, conn: sqlite3.Connection = Depends(get_conn), user: User = Depends(get_reviewer)
) -> dict:
    """Back to pending, its example excluded from training (409 unless this reviewer's decision still stands)."""
    return undo_report_decision(conn, report_id, user.name)
