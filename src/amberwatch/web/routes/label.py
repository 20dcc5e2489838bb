"""Labelling page API: the queue of chips (most uncertain, like the confirmed sites, or the tiles a label strategy
put there), their images, labels, undo."""

from __future__ import annotations

import sqlite3

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict

from amberwatch.errors import InvalidInputError
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.decode import encode_jpeg
from amberwatch.results.store import get_scan
from amberwatch.web.deps import get_cache, get_conn, get_reviewer, get_vectors
from amberwatch.web.labelling import (
    QUEUE_MODES,
    STRATEGY_WORDS,
    example_items,
    fill_queue,
    item_for_key,
    item_view,
    items_as_dicts,
    labelled_count,
    latest_scan_id,
    like_items,
    queue_tiles,
    record_label,
    sample_dates,
    sample_items,
    strategy_items,
    uncertain_items,
    undo_label,
)
from amberwatch.web.params import IdField, IdPath, Text, id_query
from amberwatch.web.similar import VectorCache
from amberwatch.web.users import User

router = APIRouter()


class LabelIn(BaseModel):
    """A label for one chip."""

    model_config = ConfigDict(extra="ignore")
    key: Text
    label: Text
    category: Text | None = None
    label_from: Text | None = None  # a change sample's unit: its class at the earlier date (label: the later)


class QueueIn(BaseModel):
    """Whole tiles of a scan to put on the labelling queue."""

    model_config = ConfigDict(extra="ignore")
    scan_id: IdField
    tiles: list[Text]
    source: Text = "similar"


class FillIn(BaseModel):
    """A label strategy to fill a scan's queue with."""

    model_config = ConfigDict(extra="ignore")
    scan_id: IdField | None = None  # the newest scan when omitted
    strategy: Text = "uncertain"
    count: int = 20


@router.get("/api/label/queue", summary="Chips to label: most uncertain first, like the confirmed sites, or a sample")
def queue(
    scan: int | None = id_query("scan id (newest when omitted)"),
    mode: str = Query(
        "uncertain",
        description="uncertain: closest to the threshold first; like: queued tiles, then"
        " the tiles most like the confirmed sites",
    ),
    sample: int | None = id_query("area sample id: its units without a reference class"),
    strategy: str | None = Query(
        None, description="the tiles this label strategy put on the queue (POST /api/label/queue/fill)"
    ),
    examples: str | None = Query(None, description="check examples of this store source (e.g. 'import')"),
    limit: int = Query(20, ge=1, le=200),
    conn: sqlite3.Connection = Depends(get_conn),
    vectors: VectorCache = Depends(get_vectors),
    user: User = Depends(get_reviewer),
) -> dict:
    """Detections and grid cells of a scan whose probability is closest to the model threshold, not yet labelled;
    with ``mode=like``, queued tiles then the tiles most like the confirmed sites (``confirmed``, ``queued`` and a
    ``note`` when none can be ranked); with ``sample``, the sample's units still to review (blind to the map)."""
    if examples is not None:
        items, checked = example_items(conn, examples, limit)
        return {
            "scan_id": None,
            "examples": examples,
            "threshold": None,
            "labelled": checked,
            "items": items_as_dicts(items, None, None),
        }
    if sample is not None:
        items, scan_id, reviewed = sample_items(conn, sample, limit)
        return {
            "scan_id": scan_id,
            "sample_id": sample,
            "threshold": None,
            "labelled": reviewed,
            "items": items_as_dicts(items, None, get_scan(conn, scan_id).zoom),
            "dates": sample_dates(conn, sample),  # a change sample's (earlier, later) imagery dates, else None
        }
    if strategy is not None:
        return _strategy_queue(conn, scan, strategy, limit)
    if mode not in QUEUE_MODES:
        raise InvalidInputError(f"unknown queue mode {mode!r}: expected one of {', '.join(QUEUE_MODES)}")
    scan_id = scan if scan is not None else latest_scan_id(conn)
    info: dict = {}
    if mode == "like":
        items, thr, info = like_items(conn, vectors, scan_id, limit)
    else:
        items, thr = uncertain_items(conn, scan_id, limit)
    return {
        "scan_id": scan_id,
        "mode": mode,
        "threshold": thr,
        "labelled": labelled_count(conn, scan_id),
        "items": items_as_dicts(items, thr, get_scan(conn, scan_id).zoom),
        **info,
    }


def _strategy_queue(conn: sqlite3.Connection, scan: int | None, strategy: str, limit: int) -> dict:
    """The queue of a label strategy's tiles, as the page reads it."""
    scan_id = scan if scan is not None else latest_scan_id(conn)
    items = strategy_items(conn, scan_id, strategy, limit)
    thr = float(get_scan(conn, scan_id).model_threshold)
    return {
        "scan_id": scan_id,
        "mode": "strategy",
        "strategy": strategy,
        "words": STRATEGY_WORDS[strategy],
        "threshold": thr,
        "labelled": labelled_count(conn, scan_id),
        "items": items_as_dicts(items, thr, get_scan(conn, scan_id).zoom),
    }


@router.post("/api/label/queue/fill", summary="Fill a scan's labelling queue with tiles picked by a label strategy")
def fill(body: FillIn, conn: sqlite3.Connection = Depends(get_conn), user: User = Depends(get_reviewer)) -> dict:
    """Top the queue up to ``count`` unlabelled tiles picked by ``strategy`` (uncertain, similar, spread, random, mix);
    ``note`` says when ``similar`` had no confirmed site to compare with."""
    scan_id = body.scan_id if body.scan_id is not None else latest_scan_id(conn)
    return fill_queue(conn, scan_id, body.strategy, body.count, user=user.name)


@router.post("/api/label/queue", status_code=201, summary="Put whole tiles of a scan on the labelling queue")
def enqueue(body: QueueIn, conn: sqlite3.Connection = Depends(get_conn), user: User = Depends(get_reviewer)) -> dict:
    """Queue tiles ("z/x/y") for the 'like the confirmed sites' mode, in one request; tiles already queued stay once."""
    return queue_tiles(conn, body.scan_id, body.tiles, source=body.source, user=user.name)


@router.get("/api/label/chip.jpg", summary="The image of a chip to label (reviewers)", response_class=Response)
def chip(
    key: str,
    at: str = Query("later", description="later: the item's imagery; earlier: a change sample unit's earlier date"),
    conn: sqlite3.Connection = Depends(get_conn),
    cache: TileCache = Depends(get_cache),
    user: User = Depends(get_reviewer),
) -> Response:
    """JPEG of the chip as the page shows it: an example's stored image, or the item and its surroundings.

    The surroundings come from the tile cache at the scan's zoom, at least 256 native pixels a side.

    Reviewers only, like the rest of the labelling API: example keys (``e<ID>``) show the training data, and a
    labelled chip is the image of its example. The public sees detections through ``/api/detections/{id}/chip.jpg``.
    A unit of a change sample has a view per date, each from its own scan's cached imagery (``at``).
    """
    return Response(
        encode_jpeg(item_view(conn, cache, item_for_key(conn, key), at)),
        media_type="image/jpeg",
        headers={"cache-control": "private, no-store"},
    )


@router.post("/api/label", status_code=201, summary="Label a chip (mining / not_mining / skip / no_imagery)")
def label(
    body: LabelIn,
    conn: sqlite3.Connection = Depends(get_conn),
    cache: TileCache = Depends(get_cache),
    user: User = Depends(get_reviewer),
) -> dict:
    """Add the chip to the example store with source 'label-page' (a skip only records the skip).

    A unit of an area sample gets its reference class instead; a change sample's unit needs ``label_from`` too.
    """
    return record_label(
        conn, cache, body.key, body.label, user=user.name, category=body.category, label_from=body.label_from
    )


@router.post("/api/label/{action_id}/undo", summary="Undo a label")
def undo(action_id: IdPath, conn: sqlite3.Connection = Depends(get_conn), user: User = Depends(get_reviewer)) -> dict:
    """Return the chip to the queue; an example the label created is excluded from training."""
    return undo_label(conn, action_id, user=user.name)
