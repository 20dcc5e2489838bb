"""Labelling page API: the most uncertain chips of a scan, their images, labels and undo."""

from __future__ import annotations

import sqlite3

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict

from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.decode import encode_jpeg
from amberwatch.web.deps import get_cache, get_conn, get_reviewer
from amberwatch.web.labelling import (
    example_items,
    item_chip,
    item_for_key,
    labelled_count,
    latest_scan_id,
    record_label,
    sample_items,
    uncertain_items,
    undo_label,
)
from amberwatch.web.users import User

router = APIRouter()


class LabelIn(BaseModel):
    """A label for one chip."""

    model_config = ConfigDict(extra="ignore")
    key: str
    label: str
    category: str | None = None


@router.get("/api/label/queue", summary="Chips to label, most uncertain first (or an area sample's units)")
def queue(
    scan: int | None = Query(None, description="scan id (newest when omitted)"),
    sample: int | None = Query(None, description="area sample id: its units without a reference class"),
    examples: str | None = Query(None, description="check examples of this store source (e.g. 'import')"),
    limit: int = Query(20, ge=1, le=200),
    conn: sqlite3.Connection = Depends(get_conn),
    user: User = Depends(get_reviewer),
) -> dict:
    """Detections and grid cells of a scan whose probability is closest to the model threshold, not yet labelled;
    with ``sample``, the sample's units still to review (shown blind to the map's class)."""
    if examples is not None:
        items, checked = example_items(conn, examples, limit)
        return {
            "scan_id": None,
            "examples": examples,
            "threshold": None,
            "labelled": checked,
            "items": [i.as_dict(None) for i in items],
        }
    if sample is not None:
        items, scan_id, reviewed = sample_items(conn, sample, limit)
        return {
            "scan_id": scan_id,
            "sample_id": sample,
            "threshold": None,
            "labelled": reviewed,
            "items": [i.as_dict(None) for i in items],
        }
    scan_id = scan if scan is not None else latest_scan_id(conn)
    items, thr = uncertain_items(conn, scan_id, limit)
    return {
        "scan_id": scan_id,
        "threshold": thr,
        "labelled": labelled_count(conn, scan_id),
        "items": [i.as_dict(thr) for i in items],
    }


@router.get("/api/label/chip.jpg", summary="The image of a chip to label", response_class=Response)
def chip(key: str, conn: sqlite3.Connection = Depends(get_conn), cache: TileCache = Depends(get_cache)) -> Response:
    """JPEG of the chip rendered from the tile cache."""
    return Response(encode_jpeg(item_chip(conn, cache, item_for_key(conn, key))), media_type="image/jpeg")


@router.post("/api/label", status_code=201, summary="Label a chip (mining / not_mining / skip)")
def label(
    body: LabelIn,
    conn: sqlite3.Connection = Depends(get_conn),
    cache: TileCache = Depends(get_cache),
    user: User = Depends(get_reviewer),
) -> dict:
    """Add the chip to the example store with source 'label-page' (a skip only records the skip)."""
    return record_label(conn, cache, body.key, body.label, user=user.name, category=body.category)


@router.post("/api/label/{action_id}/undo", summary="Undo a label")
def undo(action_id: int, conn: sqlite3.Connection = Depends(get_conn), user: User = Depends(get_reviewer)) -> dict:
    """Return the chip to the queue; an example the label created is excluded from training."""
    return undo_label(conn, action_id, user=user.name)
