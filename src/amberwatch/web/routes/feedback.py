"""Reviewer endpoints: the queue of readers' flags, and accept / reject decisions."""

from __future__ import annotations

import sqlite3

from fastapi import APIRouter, Depends, Query

from amberwatch.imagery.cache import TileCache
from amberwatch.web.deps import get_cache, get_conn, get_reviewer
from amberwatch.web.feedback import decide_feedback, list_feedback
from amberwatch.web.params import IdPath
from amberwatch.web.users import User

router = APIRouter()


@router.get("/api/me", summary="Who the bearer token belongs to (reviewers)")
def me(user: User = Depends(get_reviewer)) -> dict:
    """Name and role of the reviewer token's owner."""
    return {"name": user.name, "role": user.role}


@router.get("/api/feedback", summary="The reviewer queue of readers' flags")
def feedback_queue(
    status: str = Query("pending", description="pending | accepted | rejected | all"),
    limit: int = Query(500, ge=1, le=5000),
    conn: sqlite3.Connection = Depends(get_conn),
    user: User = Depends(get_reviewer),
) -> dict:
    """Flags with a status (oldest first): verdict, category, comment, detection and its chip URL."""
    items = list_feedback(conn, None if status == "all" else status, limit=limit)
    return {"feedback": items, "count": len(items)}


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
