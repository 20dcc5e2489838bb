"""Readers' corrections of detections, and reviewers' decisions that turn them into labelled examples.

Readers are rate limited by client address (the forwarded one behind a trusted proxy), and the reviewer queue
by two global caps: pending flags per detection, and pending flags received in the last hour.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from amberwatch.db import utc_now_iso
from amberwatch.errors import ConflictError, InvalidInputError, NotFoundError, PayloadTooLargeError, RateLimitError
from amberwatch.imagery.cache import TileCache
from amberwatch.labels.store import CATEGORIES, ExampleStore
from amberwatch.results.store import get_detection, query_detections
from amberwatch.web.chips import detection_chip

VERDICTS = ("not_mining", "confirmed")
STATUSES = ("pending", "accepted", "rejected")
MAX_COMMENT_CHARS = 2000
DEFAULT_LIMIT_PER_HOUR = 30
DEFAULT_PENDING_PER_DETECTION = 20
DEFAULT_PENDING_PER_HOUR = 300


@dataclass(frozen=True)
class FeedbackLimits:
    """How many corrections the app takes: per client and hour, pending per detection, pending per hour in all."""

    per_client_hour: int = DEFAULT_LIMIT_PER_HOUR
    pending_per_detection: int = DEFAULT_PENDING_PER_DETECTION
    pending_per_hour: int = DEFAULT_PENDING_PER_HOUR


def client_hash(salt: str, address: str | None) -> str:
    """Salted sha256 of a client's address: rate limiting without storing the IP.

    Only the address counts (behind a trusted proxy, the forwarded one): a User-Agent is the client's to choose.
    """
    return hashlib.sha256(f"{salt}\n{address or ''}".encode()).hexdigest()


def validate_feedback(verdict: Any, category: Any, comment: Any) -> tuple[str, str | None, str | None]:
    """Checked (verdict, category, comment): InvalidInputError / PayloadTooLargeError naming the bad value."""
    if verdict not in VERDICTS:
        raise InvalidInputError(f"unknown verdict {verdict!r}: expected one of {', '.join(VERDICTS)}")
    if comment is not None and not isinstance(comment, str):
        raise InvalidInputError(f"comment must be a string, got {type(comment).__name__}")
    if comment is not None and len(comment) > MAX_COMMENT_CHARS:
        raise PayloadTooLargeError(f"comment of {len(comment)} characters exceeds {MAX_COMMENT_CHARS}")
    if comment is not None and not comment.isascii():
        try:
            comment.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidInputError(f"comment holds an invalid character at position {exc.start}") from None
    comment = comment.strip() or None if comment else None
    if category not in (None, "") and category not in CATEGORIES:
        raise InvalidInputError(f"unknown category {category!r}: expected one of {', '.join(CATEGORIES)}")
    if verdict == "confirmed":
        return verdict, None, comment  # a category only describes what a not-mining site is instead
    return verdict, category or "other", comment


def record_feedback(
    conn: sqlite3.Connection,
    detection_id: int,
    verdict: Any,
    category: Any,
    comment: Any,
    *,
    client: str,
    limits: FeedbackLimits | None = None,
) -> dict:
    """Store a reader's verdict on a detection (validated, rate limited per client and in all); return it."""
    verdict, category, comment = validate_feedback(verdict, category, comment)
    det = get_detection(conn, detection_id)
    conn.execute("BEGIN IMMEDIATE")  # the counts and the insert as one: concurrent posts cannot overshoot a cap
    try:
        _check_limits(conn, int(det["id"]), client, limits or FeedbackLimits())
        cur = conn.execute(
            "INSERT INTO web_feedback"
            " (detection_id, scan_id, lon, lat, verdict, category, comment, client_hash, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                det["id"],
                det["scan_id"],
                det["centroid_lon"],
                det["centroid_lat"],
                verdict,
                category,
                comment,
                client,
                utc_now_iso(),
            ),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return get_feedback(conn, int(cur.lastrowid))


def _check_limits(conn: sqlite3.Connection, detection_id: int, client: str, limits: FeedbackLimits) -> None:
    """RateLimitError when the client, the detection or the whole reviewer queue has had enough for now."""
    since = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0).isoformat()
    recent = conn.execute(
        "SELECT COUNT(*) FROM web_feedback WHERE client_hash = ? AND created_at > ?", (client, since)
    ).fetchone()[0]
    if recent >= limits.per_client_hour:
        raise RateLimitError(
            f"too many corrections from this client: {recent} in the last hour (limit {limits.per_client_hour})"
        )
    pending = conn.execute(
        "SELECT COUNT(*) FROM web_feedback WHERE detection_id = ? AND status = 'pending'", (detection_id,)
    ).fetchone()[0]
    if pending >= limits.pending_per_detection:
        raise RateLimitError(
            f"detection {detection_id} already has {pending} corrections awaiting review"
            f" (limit {limits.pending_per_detection}): try again once a reviewer has seen them"
        )
    queued = conn.execute(
        "SELECT COUNT(*) FROM web_feedback WHERE status = 'pending' AND created_at > ?", (since,)
    ).fetchone()[0]
    if queued >= limits.pending_per_hour:
        raise RateLimitError(
            f"the reviewer queue took {queued} corrections in the last hour (limit {limits.pending_per_hour}):"
            " try again later"
        )


_SELECT = (
    "SELECT f.id, f.detection_id, f.scan_id, f.lon, f.lat, f.verdict, f.category, f.comment, f.created_at,"
    " f.status, f.reviewed_by, f.reviewed_at, f.example_id, substr(f.client_hash, 1, 8) AS client"
    " FROM web_feedback f"
)


def _as_dicts(conn: sqlite3.Connection, rows: list[sqlite3.Row]) -> list[dict]:
    """Flags as dicts with their detection's hectares, probability and date (None when it is gone)."""
    ids = sorted({int(r["detection_id"]) for r in rows})
    found = {int(d["id"]): d for d in query_detections(conn, ids=ids)} if ids else {}
    out = []
    for row in rows:
        item = dict(row)
        d = found.get(int(item["detection_id"]))
        item["area_ha"], item["mean_prob"], item["capture_date"] = (
            (d["area_ha"], d["mean_prob"], d["capture_date"]) if d is not None else (None, None, None)
        )
        item["detection_exists"] = d is not None
        item["thumbnail_url"] = f"/api/detections/{item['detection_id']}/chip.jpg"
        out.append(item)
    return out


def get_feedback(conn: sqlite3.Connection, feedback_id: int) -> dict:
    """One flag as a dict, or NotFoundError."""
    row = conn.execute(_SELECT + " WHERE f.id = ?", (int(feedback_id),)).fetchone()
    if row is None:
        raise NotFoundError(f"feedback {feedback_id!r} does not exist")
    return _as_dicts(conn, [row])[0]


def review_states(
    conn: sqlite3.Connection, detection_ids: list[int] | None = None
) -> dict[int, tuple[str | None, int]]:
    """Detection id -> (verdict of the latest accepted flag or None, pending flags) for flagged detections."""
    if not _has_feedback_table(conn):
        return {}  # a project the web app never opened: nothing reviewed yet
    rows = conn.execute(
        "SELECT detection_id, status, verdict FROM web_feedback WHERE status IN ('accepted', 'pending')"
        " ORDER BY reviewed_at, id"
    ).fetchall()
    wanted = None if detection_ids is None else set(detection_ids)
    states: dict[int, tuple[str | None, int]] = {}
    for r in rows:
        det = int(r["detection_id"])
        if wanted is not None and det not in wanted:
            continue
        review, pending = states.get(det, (None, 0))
        if r["status"] == "accepted":
            review = r["verdict"]  # rows come oldest review first: the last accepted one wins
        else:
            pending += 1
        states[det] = (review, pending)
    return states


def removed_after_review(conn: sqlite3.Connection) -> dict[int, tuple[int, float]]:
    """Scan id -> (count, hectares) of its detections reviewed as not mining (a 'not_mining' flag accepted)."""
    ids = sorted(det for det, (review, _) in review_states(conn).items() if review == "not_mining")
    out: dict[int, tuple[int, float]] = {}
    for start in range(0, len(ids), 500):  # well under SQLite's limit of bound variables
        for row in query_detections(conn, ids=ids[start : start + 500]):
            count, hectares = out.get(int(row["scan_id"]), (0, 0.0))
            out[int(row["scan_id"])] = (count + 1, hectares + float(row["area_ha"]))
    return out


def decided_feedback(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    """Accepted and rejected flags (id, detection_id, verdict, status, example_id), oldest first.

    [] without the table.
    """
    if not _has_feedback_table(conn):
        return []
    return conn.execute(
        "SELECT id, detection_id, verdict, status, example_id FROM web_feedback"
        " WHERE status IN ('accepted', 'rejected') ORDER BY id"
    ).fetchall()


def list_feedback(conn: sqlite3.Connection, status: str | None = "pending", limit: int = 500) -> list[dict]:
    """Flags with the given status (None = all), oldest first."""
    if status is not None and status not in STATUSES:
        raise InvalidInputError(f"unknown feedback status {status!r}: expected one of {', '.join(STATUSES)} or 'all'")
    sql, args = _SELECT, []
    if status is not None:
        sql += " WHERE f.status = ?"
        args.append(status)
    sql += " ORDER BY f.id LIMIT ?"
    args.append(int(limit))
    return _as_dicts(conn, conn.execute(sql, args).fetchall())


def decide_feedback(conn: sqlite3.Connection, cache: TileCache, feedback_id: int, decision: str, reviewer: str) -> dict:
    """Accept or reject a pending flag; an accepted one becomes a labelled example (source 'review').

    One transaction: the flag leaves 'pending' only if it still is (else ConflictError, 409), together with the
    example an acceptance adds, so of two decisions sent at once one wins and the other changes nothing.
    """
    if decision not in ("accept", "reject"):
        raise InvalidInputError(f"unknown decision {decision!r}: expected accept or reject")
    fb = get_feedback(conn, feedback_id)
    if fb["status"] != "pending":
        raise ConflictError(f"feedback {feedback_id} is already {fb['status']}")
    pixels = None
    if decision == "accept":
        if not fb["detection_exists"]:
            raise ConflictError(
                f"detection {fb['detection_id']} of feedback {feedback_id} no longer exists (rebuilt scan): reject it"
            )
        pixels = detection_chip(conn, cache, fb["detection_id"])  # rendered before the write lock is taken
    store = ExampleStore(conn)
    with store.transaction():
        cur = conn.execute(
            "UPDATE web_feedback SET status = ?, reviewed_by = ?, reviewed_at = ? WHERE id = ? AND status = 'pending'",
            ("accepted" if decision == "accept" else "rejected", reviewer, utc_now_iso(), int(feedback_id)),
        )
        if cur.rowcount != 1:
            now = conn.execute("SELECT status FROM web_feedback WHERE id = ?", (int(feedback_id),)).fetchone()
            raise ConflictError(f"feedback {feedback_id} is already {now['status'] if now else 'gone'}")
        if pixels is not None:
            example_id = _review_example(store, fb, pixels, reviewer)
            conn.execute("UPDATE web_feedback SET example_id = ? WHERE id = ?", (example_id, int(feedback_id)))
    return get_feedback(conn, feedback_id)


def _review_example(store: ExampleStore, fb: dict, pixels: Any, reviewer: str) -> int:
    """The example an accepted flag becomes (inside the decision's transaction)."""
    label = "not_mining" if fb["verdict"] == "not_mining" else "mining"
    example_id, _ = store.add(
        pixels,
        label,
        category=fb["category"] if label == "not_mining" else None,
        lon=fb["lon"],
        lat=fb["lat"],
        imagery_date=_iso_date(fb["capture_date"]),
        source="review",
        source_image=f"detection-{fb['detection_id']}",
        added_by=reviewer,
    )
    return int(example_id)


def _iso_date(value: str | None) -> str | None:
    return value[:10] if value else None


def _has_feedback_table(conn: sqlite3.Connection) -> bool:
    return (
        conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'web_feedback'").fetchone()
        is not None
    )
