"""Reviewer endpoints: the queue of readers' flags (one by one, or grouped per site), and accept / reject decisions.

Also a reader's own answer on a site (``/api/detections/{id}/feedback/mine``, public: the reader is their
``aw_reader`` cookie, as for posting a flag) and a site's chip with its outline drawn on (public, like the plain chip).
"""

from __future__ import annotations

import sqlite3

from fastapi import APIRouter, Body, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from amberwatch.errors import NotFoundError
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.decode import encode_jpeg
from amberwatch.results.store import get_detection, scan_exists, scan_layers
from amberwatch.review.chips import outlined_detection_chip
from amberwatch.review.feedback import (
    decide_feedback,
    decide_site,
    decide_unflagged,
    feedback_sites,
    list_feedback,
    pending_summary,
    reader_feedback,
    undo_site_decision,
    unreviewed_sites,
)
from amberwatch.web.deps import get_cache, get_client, get_conn, get_reader, get_reviewer
from amberwatch.web.params import IdField, IdPath, Text, id_query
from amberwatch.web.users import User

router = APIRouter()
STATUS_QUERY = Query("pending", description="pending | accepted | rejected | superseded | all")


class SiteDecisionIn(BaseModel):
    """A decision on all of a site's pending flags."""

    model_config = ConfigDict(extra="ignore")
    verdict: Text | None = Field(None, description="accept: the verdict accepted (needed when the flags disagree)")
    category: Text | None = Field(None, description="accept not_mining: the example's category")
    flag_ids: list[IdField] | None = Field(None, max_length=5000, description="the flags the reviewer saw")


class OwnDecisionIn(BaseModel):
    """A reviewer's own verdict on a site no reader flagged."""

    model_config = ConfigDict(extra="ignore")
    verdict: Text = Field(..., description="confirmed (mining) | not_mining")
    category: Text | None = Field(None, description="not_mining: what it is instead")


class UndoIn(BaseModel):
    """The flags a decision shown on the page decided."""

    model_config = ConfigDict(extra="ignore")
    flag_ids: list[IdField] = Field(..., min_length=1, max_length=5000)


@router.get("/api/me", summary="Who the bearer token belongs to (reviewers)")
def me(user: User = Depends(get_reviewer)) -> dict:
    """Name and role of the reviewer token's owner."""
    return {"name": user.name, "role": user.role}


@router.get("/api/feedback", summary="The reviewer queue of readers' flags, one by one")
def feedback_queue(
    status: str = STATUS_QUERY,
    limit: int = Query(500, ge=1, le=5000),
    conn: sqlite3.Connection = Depends(get_conn),
    user: User = Depends(get_reviewer),
) -> dict:
    """Flags with a status (oldest first): verdict, category, comment, detection and its chip URL."""
    items = list_feedback(conn, None if status == "all" else status, limit=limit)
    return {"feedback": items, "count": len(items)}


@router.get("/api/feedback/sites", summary="The reviewer queue grouped per site")
def feedback_by_site(
    status: str = STATUS_QUERY,
    limit: int = Query(500, ge=1, le=5000, description="at most this many sites"),
    conn: sqlite3.Connection = Depends(get_conn),
    user: User = Depends(get_reviewer),
) -> dict:
    """One entry per flagged site (first flagged first): counts of each verdict, categories, notes, flag ids.

    ``pending`` is what awaits review in all: {"sites", "flags"}.
    """
    sites = feedback_sites(conn, None if status == "all" else status, limit=limit)
    return {
        "sites": sites,
        "count": len(sites),
        "flags": sum(len(s["flags"]) for s in sites),
        "pending": pending_summary(conn),
    }


@router.get("/api/feedback/summary", summary="How many sites and flags await review")
def feedback_summary(conn: sqlite3.Connection = Depends(get_conn), user: User = Depends(get_reviewer)) -> dict:
    """{"sites": sites with a pending flag, "flags": pending flags}: for live counts on the review page."""
    return pending_summary(conn)


@router.post("/api/feedback/sites/{detection_id}/accept", summary="Accept a site's flags: one labelled example")
def accept_site(
    detection_id: IdPath,
    body: SiteDecisionIn = Body(default_factory=SiteDecisionIn),
    conn: sqlite3.Connection = Depends(get_conn),
    cache: TileCache = Depends(get_cache),
    user: User = Depends(get_reviewer),
) -> dict:
    """Accept the site's flags with ``verdict`` (the others are rejected); they become one example (source 'review').

    409 when the site's flags changed since ``flag_ids`` were loaded, or were decided meanwhile.
    """
    return decide_site(
        conn,
        cache,
        detection_id,
        "accept",
        user.name,
        verdict=body.verdict,
        category=body.category,
        flag_ids=body.flag_ids,
    )


@router.post("/api/feedback/sites/{detection_id}/reject", summary="Reject all of a site's flags")
def reject_site(
    detection_id: IdPath,
    body: SiteDecisionIn = Body(default_factory=SiteDecisionIn),
    conn: sqlite3.Connection = Depends(get_conn),
    cache: TileCache = Depends(get_cache),
    user: User = Depends(get_reviewer),
) -> dict:
    """Reject the site's flags (422 when they disagree: accept one verdict instead; 409 as for accept)."""
    return decide_site(conn, cache, detection_id, "reject", user.name, flag_ids=body.flag_ids)


@router.post("/api/feedback/{feedback_id}/accept", summary="Accept a flag: it becomes a labelled example")
def accept(
    feedback_id: IdPath,
    conn: sqlite3.Connection = Depends(get_conn),
    cache: TileCache = Depends(get_cache),
    user: User = Depends(get_reviewer),
) -> dict:
    """Accept: a not_mining flag becomes a not_mining example, a confirmation a mining example (source 'review').

    409 when the flag was decided meanwhile (e.g. rejected at the same moment): then no example is added.
    """
    return decide_feedback(conn, cache, feedback_id, "accept", user.name)


@router.post("/api/feedback/{feedback_id}/reject", summary="Reject a flag")
def reject(
    feedback_id: IdPath,
    conn: sqlite3.Connection = Depends(get_conn),
    cache: TileCache = Depends(get_cache),
    user: User = Depends(get_reviewer),
) -> dict:
    """Reject: the flag is kept as rejected and changes nothing (409 when it was decided meanwhile)."""
    return decide_feedback(conn, cache, feedback_id, "reject", user.name)


@router.get("/api/detections/{detection_id}/feedback/mine", summary="The reader's own answer on a site")
def my_feedback(
    detection_id: IdPath,
    conn: sqlite3.Connection = Depends(get_conn),
    client: str = Depends(get_client),
    reader: str = Depends(get_reader),
) -> dict:
    """{"feedback": this reader's current flag on the detection (verdict, category, comment, status) or null}.

    The reader is the ``aw_reader`` cookie; a flag sent from the same address before readers had cookies is theirs
    too. Flagging the site again replaces a pending answer (the POST's answer lists the replaced ids in ``replaced``).
    """
    get_detection(conn, detection_id)  # 404 for an unknown detection
    fb = reader_feedback(conn, detection_id, reader, address=client)
    if fb is not None:
        fb.pop("client", None)
    return {"feedback": fb}


@router.get(
    "/api/detections/{detection_id}/chip-outline.jpg",
    summary="The detection and its surroundings with its outline drawn on",
    response_class=Response,
)
def detection_chip_outlined(
    detection_id: IdPath, conn: sqlite3.Connection = Depends(get_conn), cache: TileCache = Depends(get_cache)
) -> Response:
    """At least 256 native pixels a side around the detection, from the tile cache (else its thumbnail)."""
    return Response(
        encode_jpeg(outlined_detection_chip(conn, cache, detection_id)),
        media_type="image/jpeg",
        headers={"cache-control": "no-cache"},
    )


@router.get("/api/review/unreviewed", summary="A layer's largest sites that no reviewer has decided nor reader flagged")
def unreviewed(
    scan: int | None = id_query("scan id (default: the newest scan)"),
    limit: int = Query(50, ge=1, le=500),
    conn: sqlite3.Connection = Depends(get_conn),
    user: User = Depends(get_reviewer),
) -> dict:
    """{"scan_id", "sites"}: largest first, each with its facts, place and outlined chip, for a reviewer to decide."""
    if scan is None:
        layers = scan_layers(conn)
        scan = layers[0].scan.id if layers else None
    elif not scan_exists(conn, scan):
        raise NotFoundError(f"scan {scan!r} does not exist")
    sites = unreviewed_sites(conn, scan, limit=limit) if scan is not None else []
    return {"scan_id": scan, "sites": sites, "count": len(sites)}


@router.post("/api/detections/{detection_id}/review", summary="A reviewer's own decision on an unflagged site")
def review_unflagged(
    detection_id: IdPath,
    body: OwnDecisionIn,
    conn: sqlite3.Connection = Depends(get_conn),
    cache: TileCache = Depends(get_cache),
    user: User = Depends(get_reviewer),
) -> dict:
    """Confirm (``confirmed``) or reject (``not_mining``) a site directly: one example (source 'review').

    409 when readers' flags await review there (decide them in the queue) or it is reviewed already.
    """
    return decide_unflagged(conn, cache, detection_id, body.verdict, user.name, body.category)


@router.post("/api/feedback/sites/{detection_id}/undo", summary="Undo a decision on a site")
def undo_site(
    detection_id: IdPath,
    body: UndoIn,
    conn: sqlite3.Connection = Depends(get_conn),
    user: User = Depends(get_reviewer),
) -> dict:
    """The decided flags back to pending (a reviewer's own one dropped), their example excluded from training.

    409 unless the flags are still as this reviewer decided them.
    """
    return undo_site_decision(conn, detection_id, body.flag_ids, user.name)
