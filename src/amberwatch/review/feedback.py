"""Readers' corrections of detections, and reviewers' decisions that turn them into labelled examples.

A reader is a person (the web app's reader cookie, hashed), not an address: each reader is rate limited, and
their address (the forwarded one behind a trusted proxy) only by a coarse cap many times larger, so readers behind
one office NAT neither share a limit nor see each other's answers. The reviewer queue has two global caps: pending
flags per detection, and pending flags received in the last hour.

A reader (by default the client address's hash, as for every flag before reader cookies) has one live flag per
site: flagging it again supersedes their pending flag (kept with status 'superseded' and ``superseded_by``; it still
counts towards the reader's hourly limit). Reviewers see the queue grouped per site and decide a site's flags at
once (``decide_site``).

Missed-site reports (``web_reports``): a reader marks a point of a scan's layer where the map missed mining, with an
optional note. They share the flags' limits; a reader's new report within ``REPORT_REPLACE_M`` of their pending one
replaces it. An accepted report becomes a mining example cut from the cached imagery centred on the point
(``review.chips.point_chip``); the web app then queues the point's neighbouring tiles (``report_neighbour_tiles``).
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import mercantile
from shapely.geometry import Point, shape

from amberwatch.db import utc_now_iso
from amberwatch.errors import ConflictError, InvalidInputError, NotFoundError, PayloadTooLargeError, RateLimitError
from amberwatch.imagery.cache import TileCache
from amberwatch.labels.store import CATEGORIES, ExampleStore, example_date
from amberwatch.results.places import describe_places
from amberwatch.results.public import NOT_REVIEWED, ReviewState, public_detections, removed_totals
from amberwatch.results.records import Detection, Scan
from amberwatch.results.store import get_detection, get_scan, query_detections
from amberwatch.review.chips import cache_covers, detection_chip, point_bbox, point_chip

VERDICTS = ("not_mining", "confirmed")
REVIEWER_PREFIX = "reviewer:"  # the reader and client of a reviewer's own decision on a site nobody flagged
UNDONE_REASON = "review undone"
STATUSES = ("pending", "accepted", "rejected", "superseded")
MAX_COMMENT_CHARS = 2000
DEFAULT_LIMIT_PER_HOUR = 30
DEFAULT_PENDING_PER_DETECTION = 20
DEFAULT_PENDING_PER_HOUR = 300
ADDRESS_FACTOR = 20  # an address (an office NAT, a school) may send this many readers' worth of flags


@dataclass(frozen=True)
class FeedbackLimits:
    """How many corrections the app takes: per reader and hour (``per_client_hour``), per address and hour (default
    ``ADDRESS_FACTOR`` times the reader's), pending per detection, pending per hour in all."""

    per_client_hour: int = DEFAULT_LIMIT_PER_HOUR
    pending_per_detection: int = DEFAULT_PENDING_PER_DETECTION
    pending_per_hour: int = DEFAULT_PENDING_PER_HOUR
    per_address_hour: int | None = None

    @property
    def address_hour(self) -> int:
        """The per-address cap: ``per_address_hour``, else ``ADDRESS_FACTOR`` times the per-reader one."""
        return self.per_address_hour if self.per_address_hour is not None else ADDRESS_FACTOR * self.per_client_hour


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
    reader: str | None = None,
    limits: FeedbackLimits | None = None,
    imagery_date: Any = None,
) -> dict:
    """Store a reader's verdict on a detection (validated, rate limited per client and in all); return it.

    ``reader`` (a hash; default ``client``) names the reader: their pending flag on the same site (else one sent
    from their address before readers had ids) is superseded by this one; the answer lists its ids under
    ``replaced``. ``imagery_date``: the date of the layer the reader
    looked at, which must be the detection's scan's (default: that date; None for an undated scan).
    """
    verdict, category, comment = validate_feedback(verdict, category, comment)
    det = get_detection(conn, detection_id)
    looked_at = flag_imagery_date(conn, det, imagery_date)
    reader = reader or client
    conn.execute("BEGIN IMMEDIATE")  # the counts and the insert as one: concurrent posts cannot overshoot a cap
    try:
        previous = _pending_of_reader(conn, det.id, reader, client)
        _check_limits(conn, det.id, (client, reader), limits or FeedbackLimits(), replacing=previous)
        new_id = _insert_flag(conn, det, (verdict, category, comment, looked_at), client, reader)
        _supersede(conn, previous, new_id)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return {**get_feedback(conn, new_id), "replaced": previous}


def _pending_of_reader(conn: sqlite3.Connection, detection_id: int, reader: str, address: str) -> list[int]:
    """The reader's pending flags on a site; without any, those sent from their address before readers had ids."""
    sql = "SELECT id FROM web_feedback WHERE detection_id = ? AND reader_hash = ? AND status = 'pending'"
    own = [int(r[0]) for r in conn.execute(sql, (detection_id, reader))]
    if own or reader == address:
        return own
    return [int(r[0]) for r in conn.execute(sql + " AND client_hash = ?", (detection_id, address, address))]


def flag_imagery_date(conn: sqlite3.Connection, det: Detection, imagery_date: Any) -> str | None:
    """The imagery date a flag on ``det`` records: the date of its scan's layer, checked against the one given."""
    scan_date = get_scan(conn, det.scan_id).imagery_date
    if imagery_date in (None, "") or imagery_date == scan_date:
        return scan_date
    shown = imagery_date if isinstance(imagery_date, str) else type(imagery_date).__name__
    raise InvalidInputError(
        f"imagery date {str(shown)[:40]!r} is not the date of detection {det.id}'s layer"
        f" ({scan_date or 'undated'}): flag the detection on the layer you looked at"
    )


def _insert_flag(
    conn: sqlite3.Connection,
    det: Detection,
    said: tuple[str, str | None, str | None, str | None],
    client: str,
    reader: str,
) -> int:
    """Insert a flag; ``said``: verdict, category, comment and the imagery date looked at."""
    verdict, category, comment, imagery_date = said
    cur = conn.execute(
        "INSERT INTO web_feedback (detection_id, scan_id, lon, lat, verdict, category, comment, client_hash,"
        " reader_hash, created_at, imagery_date) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            det.id,
            det.scan_id,
            det.centroid_lon,
            det.centroid_lat,
            verdict,
            category,
            comment,
            client,
            reader,
            utc_now_iso(),
            imagery_date,
        ),
    )
    return int(cur.lastrowid)


def _supersede(conn: sqlite3.Connection, ids: list[int], by: int) -> None:
    """Mark a reader's earlier pending flags as replaced by flag ``by`` (inside the caller's transaction)."""
    if ids:
        marks = ",".join("?" * len(ids))
        conn.execute(
            f"UPDATE web_feedback SET status = 'superseded', superseded_by = ? WHERE id IN ({marks})", (by, *ids)
        )


def reader_feedback(
    conn: sqlite3.Connection, detection_id: int, reader: str, *, address: str | None = None
) -> dict | None:
    """The reader's current flag on a detection (pending or decided; never a superseded one), or None.

    ``address``: the client hash of the reader's address; without a flag of their own, a flag made from that address
    before readers had ids (its reader is the address itself) is theirs.
    """
    row = conn.execute(
        _SELECT + " WHERE f.detection_id = ? AND f.reader_hash = ? AND f.status != 'superseded'"
        " ORDER BY f.id DESC LIMIT 1",
        (int(detection_id), reader),
    ).fetchone()
    if row is None and address is not None:
        row = conn.execute(
            _SELECT + " WHERE f.detection_id = ? AND f.reader_hash = ? AND f.client_hash = ?"
            " AND f.status != 'superseded' ORDER BY f.id DESC LIMIT 1",
            (int(detection_id), address, address),
        ).fetchone()
    return None if row is None else _as_dicts(conn, [row])[0]


def _check_limits(
    conn: sqlite3.Connection, detection_id: int, who: tuple[str, str], limits: FeedbackLimits, replacing: list[int]
) -> None:
    """RateLimitError when the reader, their address, the detection or the whole queue has had enough for now.

    ``who``: the client (address) hash and the reader hash. The flags in ``replacing`` leave the queue as the new
    one enters it, so the queue caps leave them out.
    """
    since = _hour_ago()
    _check_senders(conn, who, limits, since)
    not_replaced = f" AND id NOT IN ({','.join('?' * len(replacing))})" if replacing else ""
    pending = conn.execute(
        "SELECT COUNT(*) FROM web_feedback WHERE detection_id = ? AND status = 'pending'" + not_replaced,
        (detection_id, *replacing),
    ).fetchone()[0]
    if pending >= limits.pending_per_detection:
        raise RateLimitError(
            f"detection {detection_id} already has {pending} corrections awaiting review"
            f" (limit {limits.pending_per_detection}): try again once a reviewer has seen them"
        )
    _check_queue(conn, since, limits, replacing, [])


def _hour_ago() -> str:
    return (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0).isoformat()


def _check_senders(conn: sqlite3.Connection, who: tuple[str, str], limits: FeedbackLimits, since: str) -> None:
    """RateLimitError when the reader or their address sent their hourly share of flags and reports."""
    client, reader = who
    for column, cap, whom in (
        ("reader_hash", limits.per_client_hour, "reader"),
        ("client_hash", limits.address_hour, "address"),
    ):
        recent = _recent_corrections(conn, column, reader if whom == "reader" else client, since)
        if recent >= cap:
            raise RateLimitError(f"too many corrections from this {whom}: {recent} in the last hour (limit {cap})")


def _check_queue(
    conn: sqlite3.Connection, since: str, limits: FeedbackLimits, flags_replaced: list[int], reports_replaced: list[int]
) -> None:
    """RateLimitError when the reviewer queue took its hourly share of flags and reports (leaving out replaced ones)."""
    not_replaced = f" AND id NOT IN ({','.join('?' * len(flags_replaced))})" if flags_replaced else ""
    queued = conn.execute(
        "SELECT COUNT(*) FROM web_feedback WHERE status = 'pending' AND created_at > ?" + not_replaced,
        (since, *flags_replaced),
    ).fetchone()[0] + _pending_reports_since(conn, since, reports_replaced)
    if queued >= limits.pending_per_hour:
        raise RateLimitError(
            f"the reviewer queue took {queued} corrections in the last hour (limit {limits.pending_per_hour}):"
            " try again later"
        )


def _recent_corrections(conn: sqlite3.Connection, column: str, value: str, since: str) -> int:
    """Flags and missed-site reports sent by one reader or address (``column``) since a time: they share limits."""
    sql = "SELECT COUNT(*) FROM {} WHERE " + column + " = ? AND created_at > ?"
    return sum(conn.execute(sql.format(t), (value, since)).fetchone()[0] for t in ("web_feedback", "web_reports"))


def _pending_reports_since(conn: sqlite3.Connection, since: str, replacing: list[int]) -> int:
    """Pending missed-site reports sent since a time, leaving out those in ``replacing``."""
    not_replaced = f" AND id NOT IN ({','.join('?' * len(replacing))})" if replacing else ""
    return int(
        conn.execute(
            "SELECT COUNT(*) FROM web_reports WHERE status = 'pending' AND created_at > ?" + not_replaced,
            (since, *replacing),
        ).fetchone()[0]
    )


_SELECT = (
    "SELECT f.id, f.detection_id, f.scan_id, f.lon, f.lat, f.verdict, f.category, f.comment, f.created_at,"
    " f.status, f.reviewed_by, f.reviewed_at, f.example_id, f.superseded_by, f.imagery_date,"
    " substr(f.client_hash, 1, 8) AS client"
    " FROM web_feedback f"
)


def _as_dicts(conn: sqlite3.Connection, rows: list[sqlite3.Row]) -> list[dict]:
    """Flags as dicts with their detection's hectares, probability and date (None when it is gone)."""
    ids = sorted({int(r["detection_id"]) for r in rows})
    found = {d.id: d for d in query_detections(conn, ids=ids)} if ids else {}
    out = []
    for row in rows:
        item = dict(row)
        d = found.get(int(item["detection_id"]))
        item["area_ha"], item["mean_prob"], item["capture_date"] = (
            (d.area_ha, d.mean_prob, d.capture_date) if d is not None else (None, None, None)
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


def review_states(conn: sqlite3.Connection, detection_ids: list[int] | None = None) -> dict[int, ReviewState]:
    """Detection id -> ReviewState (verdict of the latest accepted flag or None, pending flags) of flagged ones."""
    if not _has_feedback_table(conn):
        return {}  # a project the web app never opened: nothing reviewed yet
    rows = conn.execute(
        "SELECT detection_id, status, verdict FROM web_feedback WHERE status IN ('accepted', 'pending')"
        " ORDER BY reviewed_at, id"
    ).fetchall()
    wanted = None if detection_ids is None else set(detection_ids)
    states: dict[int, ReviewState] = {}
    for r in rows:
        det = int(r["detection_id"])
        if wanted is not None and det not in wanted:
            continue
        review, pending = states.get(det, NOT_REVIEWED)
        if r["status"] == "accepted":
            review = r["verdict"]  # rows come oldest review first: the last accepted one wins
        else:
            pending += 1
        states[det] = ReviewState(review, pending)
    return states


def removed_after_review(conn: sqlite3.Connection) -> dict[int, tuple[int, float]]:
    """Scan id -> (count, hectares) of its detections reviewed as not mining, or following such a review at
    another imagery date (``results.public.removed_totals``)."""
    return removed_totals(conn, review_states(conn))


@dataclass(frozen=True)
class DecidedFlag:
    """A reader's flag a reviewer accepted or rejected, with the example an acceptance made (else None)."""

    id: int
    detection_id: int
    verdict: str  # the reader's: confirmed | not_mining | ...
    status: str  # accepted | rejected
    example_id: int | None

    @property
    def mining(self) -> bool:
        """What the decision says the site is: an accepted "confirmed", or a rejected other verdict."""
        says_mining = self.verdict == "confirmed"
        return says_mining if self.status == "accepted" else not says_mining


def decided_feedback(conn: sqlite3.Connection) -> list[DecidedFlag]:
    """Accepted and rejected flags, oldest first; [] without the table."""
    if not _has_feedback_table(conn):
        return []
    return [
        DecidedFlag(int(r[0]), int(r[1]), r[2], r[3], None if r[4] is None else int(r[4]))
        for r in conn.execute(
            "SELECT id, detection_id, verdict, status, example_id FROM web_feedback"
            " WHERE status IN ('accepted', 'rejected') ORDER BY id"
        )
    ]


def list_feedback(conn: sqlite3.Connection, status: str | None = "pending", limit: int = 500) -> list[dict]:
    """Flags with the given status (None = all), oldest first."""
    _check_status(status)
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


def _check_status(status: str | None) -> None:
    if status is not None and status not in STATUSES:
        raise InvalidInputError(f"unknown feedback status {status!r}: expected one of {', '.join(STATUSES)} or 'all'")


def feedback_sites(conn: sqlite3.Connection, status: str | None = "pending", limit: int = 500) -> list[dict]:
    """Flags with a status (None = all but superseded) grouped per site, the site flagged first coming first.

    Each site: its detection's facts, ``place`` (e.g. "2.3 km NE of Klesiv"), the chip with its outline,
    ``counts`` of each verdict, ``categories`` of the not-mining flags (most frequent first), ``flag_ids`` and
    ``flags`` (verdict, category, comment, time, status of each).
    """
    _check_status(status)
    where, args = (" WHERE f.status = ?", [status]) if status else (" WHERE f.status != 'superseded'", [])
    groups: dict[int, list[sqlite3.Row]] = {}
    for row in conn.execute(_SELECT + where + " ORDER BY f.id", args):
        if int(row["detection_id"]) in groups or len(groups) < limit:
            groups.setdefault(int(row["detection_id"]), []).append(row)
    flags = _as_dicts(conn, [row for rows in groups.values() for row in rows])
    by_site: dict[int, list[dict]] = {}
    for fb in flags:
        by_site.setdefault(int(fb["detection_id"]), []).append(fb)
    sites = [_site(fbs) for fbs in by_site.values()]
    for site, place in zip(sites, describe_places((s["lon"], s["lat"]) for s in sites)):
        site["place"] = place
    return sites


def _site(flags: list[dict]) -> dict:
    """One site of the grouped queue from its flags (oldest first)."""
    first = flags[0]
    verdicts = Counter(f["verdict"] for f in flags)
    categories = Counter(f["category"] for f in flags if f["verdict"] == "not_mining" and f["category"])
    did = int(first["detection_id"])
    return {
        **{k: first[k] for k in ("detection_id", "scan_id", "lon", "lat", "area_ha", "mean_prob", "capture_date")},
        "detection_exists": first["detection_exists"],
        "chip_url": f"/api/detections/{did}/chip-outline.jpg",
        "counts": {v: verdicts.get(v, 0) for v in VERDICTS},
        "categories": dict(categories.most_common()),
        "flag_ids": [int(f["id"]) for f in flags],
        "flags": [
            {
                k: f[k]
                for k in ("id", "verdict", "category", "comment", "created_at", "status", "example_id", "imagery_date")
            }
            for f in flags
        ],
        "first_flagged_at": first["created_at"],
        "last_flagged_at": max(f["created_at"] for f in flags),
    }


def pending_summary(conn: sqlite3.Connection) -> dict:
    """How much awaits review: {"sites": sites with a pending flag, "flags": pending flags}."""
    row = conn.execute(
        "SELECT COUNT(DISTINCT detection_id), COUNT(*) FROM web_feedback WHERE status = 'pending'"
    ).fetchone()
    return {"sites": int(row[0]), "flags": int(row[1])}


def _pending_ids(conn: sqlite3.Connection, detection_id: int) -> list[int]:
    return [
        int(r[0])
        for r in conn.execute(
            "SELECT id FROM web_feedback WHERE detection_id = ? AND status = 'pending' ORDER BY id",
            (int(detection_id),),
        )
    ]


def decide_site(
    conn: sqlite3.Connection,
    cache: TileCache,
    detection_id: int,
    decision: str,
    reviewer: str,
    *,
    verdict: Any = None,
    category: Any = None,
    flag_ids: list[int] | None = None,
) -> dict:
    """Decide every pending flag of a site at once; return the outcome and what remains to review.

    Accept: the flags with ``verdict`` (needed when the flags disagree) are accepted and become one example (its
    category: ``category``, else the most frequent one of the flags); the others are rejected. Reject: every flag
    is rejected (only when they agree: readers who disagree cannot all be wrong). ``flag_ids``, the flags the
    reviewer saw, must still be the site's pending flags, else ConflictError (409): a reader flagged meanwhile.
    """
    if decision not in ("accept", "reject"):
        raise InvalidInputError(f"unknown decision {decision!r}: expected accept or reject")
    flags = [get_feedback(conn, fid) for fid in _pending_ids(conn, detection_id)]
    ids = [int(f["id"]) for f in flags]
    if not ids:
        raise ConflictError(f"detection {detection_id} has no flags awaiting review")
    if flag_ids is not None and sorted(set(flag_ids)) != ids:
        raise ConflictError(f"the flags of detection {detection_id} changed since the queue was loaded: reload it")
    chosen = _site_verdict(detection_id, flags, decision, verdict)
    accepted = [f for f in flags if f["verdict"] == chosen]
    pixels = None
    if accepted:
        if not flags[0]["detection_exists"]:
            raise ConflictError(f"detection {detection_id} no longer exists (rebuilt scan): reject its flags")
        pixels = detection_chip(conn, cache, detection_id)  # rendered before the write lock is taken
    store = ExampleStore(conn)
    with store.transaction():
        if _pending_ids(conn, detection_id) != ids:
            raise ConflictError(f"the flags of detection {detection_id} were decided or changed meanwhile: reload")
        example_id = _decide_flags(conn, store, accepted, flags, _site_category(accepted, category), pixels, reviewer)
    return {
        "detection_id": int(detection_id),
        "status": "accepted" if accepted else "rejected",
        "verdict": chosen,
        "accepted": [int(f["id"]) for f in accepted],
        "rejected": [fid for fid in ids if fid not in {int(f["id"]) for f in accepted}],
        "example_id": example_id,
        "remaining": pending_summary(conn),
    }


def _site_verdict(detection_id: int, flags: list[dict], decision: str, verdict: Any) -> str | None:
    """The verdict a site decision accepts (None: reject all), or InvalidInputError naming what does not fit."""
    present = sorted({f["verdict"] for f in flags})
    if decision == "reject":
        if len(present) > 1:
            raise InvalidInputError(
                f"the flags of detection {detection_id} disagree ({', '.join(present)}): accept one verdict instead"
            )
        return None
    if verdict in (None, ""):
        if len(present) > 1:
            raise InvalidInputError(
                f"the flags of detection {detection_id} disagree ({', '.join(present)}): say which verdict to accept"
            )
        return present[0]
    if verdict not in present:
        raise InvalidInputError(
            f"verdict {verdict!r} is not among the flags of detection {detection_id} ({', '.join(present)})"
        )
    return str(verdict)


def _site_category(accepted: list[dict], category: Any) -> str | None:
    """The example's category: the reviewer's, else the accepted not-mining flags' most frequent one."""
    if not accepted or accepted[0]["verdict"] != "not_mining":
        return None
    if category not in (None, ""):
        if category not in CATEGORIES:
            raise InvalidInputError(f"unknown category {category!r}: expected one of {', '.join(CATEGORIES)}")
        return str(category)
    counts = Counter(f["category"] for f in accepted if f["category"])
    return counts.most_common(1)[0][0] if counts else "other"


def _decide_flags(
    conn: sqlite3.Connection,
    store: ExampleStore,
    accepted: list[dict],
    flags: list[dict],
    category: str | None,
    pixels: Any,
    reviewer: str,
) -> int | None:
    """Inside the decision's transaction: set each flag's status; the accepted ones share one new example."""
    now, accepted_ids = utc_now_iso(), {int(f["id"]) for f in accepted}
    example_id = None
    if accepted and pixels is not None:
        example_id = _review_example(store, {**accepted[0], "category": category}, pixels, reviewer)
    for f in flags:
        ok = int(f["id"]) in accepted_ids
        conn.execute(
            "UPDATE web_feedback SET status = ?, reviewed_by = ?, reviewed_at = ?, example_id = ? WHERE id = ?",
            ("accepted" if ok else "rejected", reviewer, now, example_id if ok else None, int(f["id"])),
        )
    return example_id


def _review_example(store: ExampleStore, fb: dict, pixels: Any, reviewer: str) -> int:
    """The example an accepted flag becomes (inside the decision's transaction)."""
    label = "not_mining" if fb["verdict"] == "not_mining" else "mining"
    example_id, _ = store.add(
        pixels,
        label,
        category=fb["category"] if label == "not_mining" else None,
        lon=fb["lon"],
        lat=fb["lat"],
        imagery_date=example_date(fb["capture_date"]),
        source="review",
        source_image=f"detection-{fb['detection_id']}",
        added_by=reviewer,
    )
    return int(example_id)


def _has_feedback_table(conn: sqlite3.Connection) -> bool:
    return (
        conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'web_feedback'").fetchone()
        is not None
    )


def unreviewed_sites(conn: sqlite3.Connection, scan_id: int, limit: int = 50) -> list[dict]:
    """A scan's largest detections with no review (own or followed from another date) and no flag awaiting one.

    Each: its facts, ``place`` and outlined chip URL, as the grouped queue's sites.
    """
    found = public_detections(conn, review_states(conn), scan_id=scan_id, order="largest", places=False)
    open_sites = [d for d in found if d.review == NOT_REVIEWED and d.review_from is None][: int(limit)]
    places = describe_places((d.centroid_lon, d.centroid_lat) for d in open_sites)
    return [
        {
            "detection_id": d.id,
            "scan_id": d.scan_id,
            "lon": d.centroid_lon,
            "lat": d.centroid_lat,
            "area_ha": d.area_ha,
            "mean_prob": d.mean_prob,
            "capture_date": d.capture_date,
            "place": place,
            "chip_url": f"/api/detections/{d.id}/chip-outline.jpg",
        }
        for d, place in zip(open_sites, places)
    ]


def decide_unflagged(
    conn: sqlite3.Connection, cache: TileCache, detection_id: int, verdict: Any, reviewer: str, category: Any = None
) -> dict:
    """A reviewer's own decision on a site no reader flagged: an accepted flag of theirs and one example.

    ConflictError (409) when the site has flags awaiting review (decide those) or a review already.
    """
    verdict, category, _ = validate_feedback(verdict, category, None)
    det = get_detection(conn, detection_id)
    pixels = detection_chip(conn, cache, det.id)  # rendered before the write lock is taken
    who = REVIEWER_PREFIX + reviewer
    store = ExampleStore(conn)
    with store.transaction():
        state = review_states(conn, [det.id]).get(det.id, NOT_REVIEWED)
        if state.pending or state.verdict is not None:
            raise ConflictError(
                f"detection {det.id} already has {state.pending} flags awaiting review or a review"
                f" ({state.verdict or 'none'}): decide it in the readers' queue"
            )
        flag_id = _insert_flag(conn, det, (verdict, category, None, get_scan(conn, det.scan_id).imagery_date), who, who)
        fb = get_feedback(conn, flag_id)
        example_id = _review_example(store, fb, pixels, reviewer)
        conn.execute(
            "UPDATE web_feedback SET status = 'accepted', reviewed_by = ?, reviewed_at = ?, example_id = ?"
            " WHERE id = ?",
            (reviewer, utc_now_iso(), example_id, flag_id),
        )
    return {**get_feedback(conn, flag_id), "remaining": pending_summary(conn)}


def undo_site_decision(conn: sqlite3.Connection, detection_id: int, flag_ids: list[int], reviewer: str) -> dict:
    """Undo a reviewer's decision on a site: its flags ``flag_ids`` back to pending (a reviewer's own flag is
    dropped: it was never a reader's), the example it made excluded (kept, out of training).

    ConflictError (409) unless those flags are still exactly as that reviewer decided them.
    """
    ids = sorted({int(i) for i in flag_ids})
    if not ids:
        raise InvalidInputError(f"undo on detection {detection_id} needs the decided flag ids")
    store = ExampleStore(conn)
    with store.transaction():
        marks = ",".join("?" * len(ids))
        rows = conn.execute(
            f"SELECT id, status, reviewed_by, example_id, client_hash FROM web_feedback WHERE id IN ({marks})"
            " AND detection_id = ?",
            (*ids, int(detection_id)),
        ).fetchall()
        if len(rows) != len(ids) or any(r["status"] not in ("accepted", "rejected") for r in rows):
            raise ConflictError(f"the flags {ids} of detection {detection_id} are no longer as decided: reload")
        if any(r["reviewed_by"] != reviewer for r in rows):
            raise ConflictError(f"the decision on detection {detection_id} was another reviewer's: it stays")
        examples = sorted({int(r["example_id"]) for r in rows if r["example_id"] is not None})
        own = [int(r["id"]) for r in rows if str(r["client_hash"]).startswith(REVIEWER_PREFIX)]
        conn.execute(f"DELETE FROM web_feedback WHERE id IN ({marks}) AND client_hash LIKE 'reviewer:%'", ids)
        conn.execute(
            "UPDATE web_feedback SET status = 'pending', reviewed_by = NULL, reviewed_at = NULL, example_id = NULL"
            f" WHERE id IN ({marks})",
            ids,
        )
        if examples:
            store.exclude(ids=examples, reason=UNDONE_REASON)
    return {
        "detection_id": int(detection_id),
        "status": "pending",
        "pending": [i for i in ids if i not in own],
        "excluded_examples": examples,
        "remaining": pending_summary(conn),
    }


REPORT_REPLACE_M = 50.0  # a reader's new report this close to their pending one replaces it
_REPORT_SELECT = (
    "SELECT id, scan_id, lon, lat, imagery_date, note, created_at, status, superseded_by, reviewed_by, reviewed_at,"
    " example_id FROM web_reports"
)


def record_report(
    conn: sqlite3.Connection,
    cache: TileCache,
    scan_id: int,
    point: tuple[Any, Any],
    note: Any = None,
    *,
    client: str,
    reader: str | None = None,
    limits: FeedbackLimits | None = None,
    imagery_date: Any = None,
) -> dict:
    """Store a reader's report of mining the map missed at ``point`` (lon, lat) on scan ``scan_id``'s layer.

    Refused (InvalidInputError, 422) outside the scan's AOI or where the cache holds no imagery of its layer; limited
    with the reader's flags. Their pending report within REPORT_REPLACE_M is superseded (its id in ``replaced``).
    """
    lon, lat = _check_point(*point)
    _, _, note = validate_feedback("confirmed", None, note)
    scan = get_scan(conn, scan_id)
    looked_at = _layer_date(scan, imagery_date)
    _check_report_place(cache, scan, lon, lat)
    reader = reader or client
    conn.execute("BEGIN IMMEDIATE")
    try:
        previous = _near_pending_reports(conn, scan.id, reader, lon, lat)
        since = _hour_ago()
        _check_senders(conn, (client, reader), limits or FeedbackLimits(), since)
        _check_queue(conn, since, limits or FeedbackLimits(), [], previous)
        new_id = conn.execute(
            "INSERT INTO web_reports (scan_id, lon, lat, imagery_date, note, client_hash, reader_hash, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (scan.id, lon, lat, looked_at, note, client, reader, utc_now_iso()),
        ).lastrowid
        marks = ",".join("?" * len(previous))
        conn.execute(
            f"UPDATE web_reports SET status = 'superseded', superseded_by = ? WHERE id IN ({marks})",
            (new_id, *previous),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return {**get_report(conn, int(new_id)), "replaced": previous}


def _check_point(lon: Any, lat: Any) -> tuple[float, float]:
    """A reported point as floats, or InvalidInputError naming the bad coordinate."""
    for name, value, bound in (("lon", lon, 180.0), ("lat", lat, 90.0)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise InvalidInputError(f"{name} {str(value)[:40]!r} must be a finite number of degrees")
        if abs(value) > bound:
            raise InvalidInputError(f"{name} {value} is outside -{bound:g}..{bound:g} degrees")
    return float(lon), float(lat)


def _layer_date(scan: Scan, imagery_date: Any) -> str | None:
    """The imagery date a report on ``scan``'s layer records: the scan's, checked against the one given."""
    if imagery_date in (None, "") or imagery_date == scan.imagery_date:
        return scan.imagery_date
    shown = imagery_date if isinstance(imagery_date, str) else type(imagery_date).__name__
    raise InvalidInputError(
        f"imagery date {str(shown)[:40]!r} is not the date of scan {scan.id}'s layer"
        f" ({scan.imagery_date or 'undated'}): report on the layer you looked at"
    )


def _check_report_place(cache: TileCache, scan: Scan, lon: float, lat: float) -> None:
    """InvalidInputError unless the point lies in the scan's AOI and the cache holds its layer's imagery there."""
    if not shape(json.loads(scan.aoi_geojson)).covers(Point(lon, lat)):
        raise InvalidInputError(f"point ({lon:.6f}, {lat:.6f}) lies outside the area scan {scan.id} covers")
    if not cache_covers(cache, scan.imagery_source_id, point_bbox(lon, lat, side_m=1.0), scan.zoom):
        raise InvalidInputError(
            f"no imagery of scan {scan.id}'s layer is cached at ({lon:.6f}, {lat:.6f}): report where the map shows it"
        )


def _near_pending_reports(conn: sqlite3.Connection, scan_id: int, reader: str, lon: float, lat: float) -> list[int]:
    """The reader's pending reports on a layer within REPORT_REPLACE_M of a point."""
    rows = conn.execute(
        "SELECT id, lon, lat FROM web_reports WHERE scan_id = ? AND reader_hash = ? AND status = 'pending'",
        (scan_id, reader),
    ).fetchall()
    return [int(r[0]) for r in rows if _distance_m((lon, lat), (r[1], r[2])) <= REPORT_REPLACE_M]


def _distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Metres between two nearby lon/lat points (equirectangular: exact enough within a few km)."""
    m_per_deg = 111_320.0
    dx = (a[0] - b[0]) * m_per_deg * math.cos(math.radians((a[1] + b[1]) / 2))
    return math.hypot(dx, (a[1] - b[1]) * m_per_deg)


def get_report(conn: sqlite3.Connection, report_id: int) -> dict:
    """One missed-site report as a dict (without who sent it), or NotFoundError."""
    row = conn.execute(_REPORT_SELECT + " WHERE id = ?", (int(report_id),)).fetchone()
    if row is None:
        raise NotFoundError(f"report {report_id!r} does not exist")
    return _report_dict(row)


def _report_dict(row: sqlite3.Row) -> dict:
    return {**dict(row), "chip_url": f"/api/reports/{int(row['id'])}/chip.jpg"}


def list_reports(conn: sqlite3.Connection, status: str | None = "pending", limit: int = 500) -> list[dict]:
    """Missed-site reports with a status (None: all but superseded), oldest first, each with its ``place``."""
    _check_status(status)
    where, args = ("WHERE status = ?", [status]) if status else ("WHERE status != 'superseded'", [])
    rows = conn.execute(_REPORT_SELECT + f" {where} ORDER BY id LIMIT ?", (*args, int(limit))).fetchall()
    reports = [_report_dict(r) for r in rows]
    for report, place in zip(reports, describe_places((r["lon"], r["lat"]) for r in reports)):
        report["place"] = place
    return reports


def reports_summary(conn: sqlite3.Connection) -> dict:
    """{"reports": missed-site reports awaiting review}."""
    return {"reports": int(conn.execute("SELECT COUNT(*) FROM web_reports WHERE status = 'pending'").fetchone()[0])}


def decide_report(conn: sqlite3.Connection, cache: TileCache, report_id: int, decision: str, reviewer: str) -> dict:
    """Accept (a mining example cut from the cached imagery centred on the point, source 'review') or reject a pending
    report; ConflictError (409) when it was decided meanwhile. The answer lists the point's neighbouring ``tiles``."""
    if decision not in ("accept", "reject"):
        raise InvalidInputError(f"unknown decision {decision!r}: expected accept or reject")
    report = get_report(conn, report_id)
    scan = get_scan(conn, report["scan_id"])
    pixels = None
    if decision == "accept":  # rendered before the write lock is taken
        pixels = point_chip(cache, scan.imagery_source_id, scan.zoom, report["lon"], report["lat"])
    store = ExampleStore(conn)
    with store.transaction():
        cur = conn.execute(
            "UPDATE web_reports SET status = ?, reviewed_by = ?, reviewed_at = ? WHERE id = ? AND status = 'pending'",
            ("accepted" if pixels is not None else "rejected", reviewer, utc_now_iso(), int(report_id)),
        )
        if cur.rowcount != 1:
            raise ConflictError(f"report {report_id} is already {get_report(conn, report_id)['status']}")
        if pixels is not None:
            example_id, _ = store.add(
                pixels,
                "mining",
                lon=report["lon"],
                lat=report["lat"],
                imagery_date=example_date(report["imagery_date"]),
                source="review",
                source_image=f"report-{int(report_id)}",
                added_by=reviewer,
            )
            conn.execute("UPDATE web_reports SET example_id = ? WHERE id = ?", (int(example_id), int(report_id)))
    tiles = report_neighbour_tiles(scan.zoom, report["lon"], report["lat"])
    return {**get_report(conn, report_id), "tiles": tiles, "remaining": reports_summary(conn)}


def report_neighbour_tiles(zoom: int, lon: float, lat: float) -> list[str]:
    """The 8 tiles ("z/x/y") around the one holding the point at ``zoom`` (fewer at the edge of the world)."""
    t = mercantile.tile(lon, lat, zoom)
    n = 2**zoom
    return [
        f"{zoom}/{t.x + dx}/{t.y + dy}"
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
        if (dx or dy) and 0 <= t.x + dx < n and 0 <= t.y + dy < n
    ]


def undo_report_decision(conn: sqlite3.Connection, report_id: int, reviewer: str) -> dict:
    """A report this reviewer decided back to pending, the example it made excluded (kept, out of training).

    ConflictError (409) unless it is still as that reviewer decided it.
    """
    store = ExampleStore(conn)
    with store.transaction():
        report = get_report(conn, report_id)
        if report["status"] not in ("accepted", "rejected"):
            raise ConflictError(f"report {report_id} is {report['status']}, not decided: reload")
        if report["reviewed_by"] != reviewer:
            raise ConflictError(f"the decision on report {report_id} was another reviewer's: it stays")
        conn.execute(
            "UPDATE web_reports SET status = 'pending', reviewed_by = NULL, reviewed_at = NULL, example_id = NULL"
            " WHERE id = ?",
            (int(report_id),),
        )
        if report["example_id"] is not None:
            store.exclude(ids=[int(report["example_id"])], reason=UNDONE_REASON)
    return {**get_report(conn, report_id), "remaining": reports_summary(conn)}
