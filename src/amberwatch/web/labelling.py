"""The labelling page's queue: the scan's most uncertain chips and their labels.

The most uncertain chips are those with a probability closest to the model threshold.

Items are keyed ``d<detection id>`` (a detection), ``c<scan>/<z>/<x>/<y>/<row>/<col>`` (one cell of a
tile's probability grid), ``t<scan>/<z>/<x>/<y>`` (a whole tile, e.g. sent from a similarity search),
``u<sample>/<unit>`` (a unit of an area sample, reviewed blind to the map) or ``e<example id>`` (an example
already in the store, e.g. imported: checking its label). A unit of a change sample is shown at both dates (each
date's view cut from that scan's imagery) and labelled at both (``label_from``: its class at the earlier date).
Chips are rendered from the tile cache. Labels of detections, cells and tiles go to the example store; a sample
unit's label is its reference class (through ``amberwatch.results.area_review``) and is kept out of the
training examples so the accuracy assessment stays independent of training.

Two queue modes for a scan: "uncertain" (closest to the model threshold first) and "like" (tiles reviewers sent
to the queue, ``web_label_queue``, then the scan's tiles most like the confirmed sites, those nearest the
threshold first). A label strategy
(``model.strategies.suggest_tiles``: uncertain, similar, spread, random, mix) fills the queue with whole tiles
(source ``suggest-<strategy>``), leaving out tiles labelled or queued already.
"""

from __future__ import annotations

import heapq
import math
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import mercantile
import numpy as np

from amberwatch.db import utc_now_iso
from amberwatch.errors import ConflictError, InvalidInputError, NotFoundError
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.types import LngLatBbox
from amberwatch.labels.store import Example, ExampleStore, example_date
from amberwatch.model.strategies import SUGGEST_STRATEGIES, Suggestions, suggest_tiles
from amberwatch.results.places import describe_places
from amberwatch.results.similar import Query, ScanVectors, rank_places, tile_centre, tiles_under
from amberwatch.results.store import get_scan, grid_tiles, query_detections, tile_grid
from amberwatch.results.store import latest_scan_id as store_latest_scan_id
from amberwatch.review.chips import (
    box_fractions,
    detection_chip,
    padded_bbox,
    render_from_cache,
    render_view,
    tile_bbox,
    tile_chip_bbox,
    view_bbox,
)
from amberwatch.review.feedback import review_states
from amberwatch.web.similar import VectorCache

LABELS = ("mining", "not_mining", "skip", "no_imagery")  # no_imagery: area sample units only (one is drawn instead)
VIEW_DATES = ("later", "earlier")  # which scan's imagery a view shows: the item's, or a change sample's earlier one
CELL_MARGIN = 0.25  # only tiles whose max probability is within this of the threshold can hold candidate cells
QUEUE_MODES = ("uncertain", "like")
# The label strategies in the page's plain words (the picker and the "in use" line).
STRATEGY_WORDS = {
    "uncertain": "Where the model is unsure (recommended)",
    "similar": "Like confirmed sites",
    "spread": "Spread over the area",
    "random": "Random",
    "mix": "A mix",
}
MAX_QUEUE_TILES = 200
# Numbers in keys: ASCII digits, at most 18 of them, so every id fits a SQLite integer (below 2^63).
_N = r"([0-9]{1,18})"
_KEY_RE = re.compile(rf"^(?:d{_N}|c{_N}/{_N}/{_N}/{_N}/{_N}/{_N}|u{_N}/{_N}|e{_N}|t{_N}/{_N}/{_N}/{_N})$")
_TILE_RE = re.compile(r"^([0-9]{1,2})/([0-9]{1,10})/([0-9]{1,10})$")
_SOURCE_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class Item:
    """One chip to label."""

    key: str
    scan_id: int | None  # None for store examples
    prob: float | None  # None for sample units (reviewed blind to the map) and store examples
    bbox: LngLatBbox
    capture_date: str | None
    located: bool = True
    reason: str | None = None  # why the item is in the queue, when not for its uncertainty
    from_scan_id: int | None = None  # a unit of a change sample: the scan of the earlier date (scan_id: the later)
    dates: tuple[str, str] | None = None  # a unit of a change sample: the imagery dates (earlier, later)

    @property
    def kind(self) -> str:
        """'detection', 'cell', 'tile', 'unit' or 'example'."""
        return {"d": "detection", "c": "cell", "t": "tile", "u": "unit", "e": "example"}[self.key[0]]

    @property
    def chip_bbox(self) -> LngLatBbox:
        """The area the chip shows: the item with a margin (a cell gets its neighbours for context)."""
        if self.kind == "tile":
            return tile_chip_bbox(*parse_key(self.key)[2:])
        return padded_bbox(*self.bbox.as_tuple(), pad_frac=0.25 if self.kind == "detection" else 1.0)

    def outline(self, zoom: int) -> list[float]:
        """The item's box as fractions [left, top, right, bottom] of its view at ``zoom`` (what the page shows)."""
        return box_fractions(self.bbox, view_bbox(self.bbox, zoom))

    def as_dict(self, threshold: float | None, zoom: int | None = None, place: str | None = None) -> dict:
        """JSON-ready form for the page: ``outline`` within the view at the scan's ``zoom``, ``place`` in words.

        A unit of a change sample also has ``dates``: the earlier and the later view, each with its date and image.
        """
        lon, lat = self.bbox.center_deg
        out = {
            "key": self.key,
            "kind": self.kind,
            "scan_id": self.scan_id,
            "prob": None if self.prob is None else round(self.prob, 4),
            "threshold": threshold,
            "lon": round(lon, 6) if self.located else None,
            "lat": round(lat, 6) if self.located else None,
            "place": place if self.located else None,
            "capture_date": self.capture_date,
            "chip_url": f"/api/label/chip.jpg?key={self.key}",
            # An example is the whole chip.
            "outline": None if self.kind == "example" or zoom is None else self.outline(zoom),
            "reason": self.reason,
        }
        if self.dates is not None:
            url = out["chip_url"]
            out["dates"] = [
                {"at": "earlier", "date": self.dates[0], "chip_url": f"{url}&at=earlier"},
                {"at": "later", "date": self.dates[1], "chip_url": url},
            ]
        return out


def items_as_dicts(items: Sequence[Item], threshold: float | None, zoom: int | None) -> list[dict]:
    """The items' JSON for the page, each with its place in words ("2.3 km NE of Klesiv", or None)."""
    places = describe_places(it.bbox.center_deg for it in items)
    return [it.as_dict(threshold, zoom, place) for it, place in zip(items, places)]


def parse_key(key: str) -> tuple:
    """('d', detection), ('c', scan, z, x, y, row, col), ('t', scan, z, x, y), ('u', sample, unit) or ('e', example).

    InvalidInputError naming a malformed key.
    """
    m = _KEY_RE.match(key or "")
    if not m:
        raise InvalidInputError(
            f"unknown chip key {key!r}: expected d<ID>, c<SCAN>/<Z>/<X>/<Y>/<ROW>/<COL>, t<SCAN>/<Z>/<X>/<Y>,"
            " u<SAMPLE>/<UNIT> or e<EXAMPLE>"
        )
    if m.group(11):
        return ("t", *(int(g) for g in m.groups()[10:14]))
    if m.group(10):
        return ("e", int(m.group(10)))
    if m.group(1):
        return ("d", int(m.group(1)))
    if m.group(8):
        return ("u", int(m.group(8)), int(m.group(9)))
    return ("c", *(int(g) for g in m.groups()[1:7]))


def cell_bbox(z: int, x: int, y: int, row: int, col: int, cells: int) -> LngLatBbox:
    """Lon/lat bbox of one cell of a tile's ``cells`` x ``cells`` grid (rows from the top)."""
    b = mercantile.xy_bounds(x, y, z)
    w, h = (b.right - b.left) / cells, (b.top - b.bottom) / cells
    west, north = mercantile.lnglat(b.left + col * w, b.top - row * h)
    east, south = mercantile.lnglat(b.left + (col + 1) * w, b.top - (row + 1) * h)
    return LngLatBbox(west, south, east, north)


def latest_scan_id(conn: sqlite3.Connection) -> int:
    """Id of the newest scan, or NotFoundError when there is none."""
    scan_id = store_latest_scan_id(conn)
    if scan_id is None:
        raise NotFoundError("the database holds no scan yet: run 'amberwatch scan' first")
    return scan_id


def _done_keys(conn: sqlite3.Connection, scan_id: int) -> set[str]:
    """Keys of the scan's items labelled or skipped (not undone)."""
    return {
        r[0]
        for r in conn.execute(
            "SELECT item_key FROM web_label_actions WHERE scan_id = ? AND undone_at IS NULL", (scan_id,)
        )
    }


def uncertain_items(conn: sqlite3.Connection, scan_id: int, limit: int = 20) -> tuple[list[Item], float]:
    """The scan's not-yet-labelled items closest to the model threshold, and the threshold.

    The items are detections and grid cells.
    """
    scan = get_scan(conn, scan_id)
    thr = float(scan.model_threshold)
    done = _done_keys(conn, scan_id)
    heap: list[tuple[float, str, Item]] = []

    def offer(item: Item) -> None:
        if item.key in done:
            return
        entry = (-abs(item.prob - thr), item.key, item)
        if len(heap) < limit:
            heapq.heappush(heap, entry)
        elif entry > heap[0]:
            heapq.heapreplace(heap, entry)

    for d in query_detections(conn, scan_id=scan_id):
        offer(Item(f"d{d.id}", scan_id, d.mean_prob, d.bbox, d.capture_date))
    for t in grid_tiles(conn, scan_id, min_max_prob=thr - CELL_MARGIN):
        n = int(t.grid_cells)
        grid = np.frombuffer(bytes(t.grid), dtype=np.uint8)
        if grid.size != n * n:
            continue
        dist = np.abs(grid.astype(np.float32) / 255.0 - thr)
        best = np.argsort(dist, kind="stable")[:limit]
        for idx in best:
            if dist[idx] > CELL_MARGIN:
                break
            row, col = divmod(int(idx), n)
            key = f"c{scan_id}/{t.z}/{t.x}/{t.y}/{row}/{col}"
            offer(Item(key, scan_id, float(grid[idx]) / 255.0, cell_bbox(t.z, t.x, t.y, row, col, n), t.capture_date))
    return [e[2] for e in sorted(heap, reverse=True)], thr


class _SampleScans(NamedTuple):
    """The scans a sample's units are shown from: the later (or only) one, and a change sample's earlier one."""

    scan_id: int
    from_scan_id: int | None
    dates: tuple[str, str] | None


def _sample_scans(conn: sqlite3.Connection, sample_id: int) -> _SampleScans:
    """The sample's scan(s) and, for a change sample, their imagery dates (earlier, later); NotFoundError."""
    from amberwatch.results.sampling import load_sample

    sample = load_sample(conn, sample_id)
    if not sample.is_change:
        return _SampleScans(int(sample.scan_id), None, None)
    earlier, later = get_scan(conn, int(sample.from_scan_id)), get_scan(conn, int(sample.scan_id))
    return _SampleScans(later.id, earlier.id, (str(earlier.imagery_date), str(later.imagery_date)))


def sample_dates(conn: sqlite3.Connection, sample_id: int) -> tuple[str, str] | None:
    """A change sample's imagery dates (earlier, later); None for a one-date sample."""
    return _sample_scans(conn, sample_id).dates


def _unit_item(sample_id: int, unit: dict, scans: _SampleScans) -> Item:
    return Item(
        f"u{sample_id}/{unit['unit_id']}",
        scans.scan_id,
        None,
        LngLatBbox(unit["west"], unit["south"], unit["east"], unit["north"]),
        None,
        from_scan_id=scans.from_scan_id,
        dates=scans.dates,
    )


def sample_items(conn: sqlite3.Connection, sample_id: int, limit: int = 20) -> tuple[list[Item], int, int]:
    """Units of an area sample still without a reference class (skipped ones last): items, scan id, reviewed count."""
    from amberwatch.results.area_review import pending_units
    from amberwatch.results.sampling import sample_units

    scans = _sample_scans(conn, sample_id)
    skipped = {
        r[0]
        for r in conn.execute(
            "SELECT item_key FROM web_label_actions WHERE item_key LIKE ? AND label = 'skip' AND undone_at IS NULL",
            (f"u{sample_id}/%",),
        )
    }
    items = [_unit_item(sample_id, u, scans) for u in pending_units(conn, sample_id)]
    items.sort(key=lambda it: it.key in skipped)
    reviewed = sum(1 for u in sample_units(conn, sample_id) if u["reference_class"] is not None)
    return items[:limit], scans.scan_id, reviewed


def _example_item(ex: Example) -> Item:
    lon, lat = (ex.lon, ex.lat) if ex.located else (0.0, 0.0)
    return Item(f"e{ex.id}", None, None, LngLatBbox(lon, lat, lon, lat), ex.imagery_date, located=ex.located)


def example_items(conn: sqlite3.Connection, source: str, limit: int = 20) -> tuple[list[Item], int]:
    """Active examples of a source (e.g. 'import') not yet checked on the label page, and how many were checked."""
    checked = {
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT item_key FROM web_label_actions WHERE item_key LIKE 'e%' AND undone_at IS NULL"
        )
    }
    todo = [ex for ex in ExampleStore(conn).examples(status="active") if ex.source == source]
    items = [_example_item(ex) for ex in todo if f"e{ex.id}" not in checked]
    return items[:limit], len(checked)


def item_for_key(conn: sqlite3.Connection, key: str) -> Item:
    """The item a key names, or NotFoundError."""
    parsed = parse_key(key)
    if parsed[0] == "e":
        return _example_item(ExampleStore(conn).get(parsed[1]))
    if parsed[0] == "u":
        from amberwatch.results.sampling import sample_units

        _, sample_id, unit_id = parsed
        scans = _sample_scans(conn, sample_id)
        unit = next((u for u in sample_units(conn, sample_id) if u["unit_id"] == unit_id), None)
        if unit is None:
            raise NotFoundError(f"unit {unit_id} of chip {key!r} is not in area sample {sample_id}")
        return _unit_item(sample_id, unit, scans)
    if parsed[0] == "t":
        return _tile_item(conn, *parsed[1:])
    if parsed[0] == "d":
        found = query_detections(conn, ids=[parsed[1]])
        if not found:
            raise NotFoundError(f"detection {parsed[1]} of chip {key!r} does not exist")
        d = found[0]
        return Item(key, d.scan_id, d.mean_prob, d.bbox, d.capture_date)
    _, scan_id, z, x, y, row, col = parsed
    t = tile_grid(conn, scan_id, z, x, y)
    if t is None or not t.grid_cells or t.grid is None:
        raise NotFoundError(f"tile {z}/{x}/{y} of chip {key!r} has no probability grid in scan {scan_id}")
    n = int(t.grid_cells)
    if not (0 <= row < n and 0 <= col < n):
        raise NotFoundError(f"cell {row}/{col} of chip {key!r} is outside the {n}x{n} grid")
    prob = float(np.frombuffer(bytes(t.grid), dtype=np.uint8)[row * n + col]) / 255.0
    return Item(key, scan_id, prob, cell_bbox(z, x, y, row, col, n), t.capture_date)


def _tile_item(conn: sqlite3.Connection, scan_id: int, z: int, x: int, y: int, reason: str | None = None) -> Item:
    """A whole tile of a scan: its bbox, and its highest cell probability as the item's probability."""
    t = tile_grid(conn, scan_id, z, x, y)
    if t is None:
        raise NotFoundError(f"tile {z}/{x}/{y} is not a tile of scan {scan_id}")
    n = int(t.grid_cells or 0)
    grid = bytes(t.grid) if t.grid is not None else b""
    prob = float(max(grid)) / 255.0 if n and len(grid) == n * n else None
    return Item(f"t{scan_id}/{z}/{x}/{y}", scan_id, prob, tile_bbox(z, x, y), t.capture_date, reason=reason)


def item_chip(conn: sqlite3.Connection, cache: TileCache, item: Item) -> np.ndarray:
    """Pixels of an item's chip: detections as on the map, cells as a small square of cached imagery around the cell."""
    if item.kind == "detection":
        return detection_chip(conn, cache, int(item.key[1:]))
    if item.kind == "example":
        return ExampleStore(conn).pixels(int(item.key[1:]))
    scan = get_scan(conn, item.scan_id)
    pixels = render_from_cache(cache, scan.imagery_source_id, item.chip_bbox, scan.zoom)
    if pixels is None:
        raise NotFoundError(f"no cached imagery for chip {item.key!r}")
    return pixels


def item_view(conn: sqlite3.Connection, cache: TileCache, item: Item, at: str = "later") -> np.ndarray:
    """Pixels the label page shows: the item with its surroundings at the scan's zoom (an example: its own image).

    Not the training chip (``item_chip``): the view is larger, so the page need not blow it up. ``at="earlier"``:
    a change sample unit's view from the earlier scan's imagery (InvalidInputError for any other item).
    """
    if at not in VIEW_DATES:
        raise InvalidInputError(f"unknown view date {at!r}: expected one of {', '.join(VIEW_DATES)}")
    if at == "earlier" and item.from_scan_id is None:
        raise InvalidInputError(f"chip {item.key!r} is not a unit of a change sample: it has no earlier view")
    if item.kind == "example":
        return ExampleStore(conn).pixels(int(item.key[1:]))
    scan = get_scan(conn, item.from_scan_id if at == "earlier" else item.scan_id)
    image = render_view(cache, scan.imagery_source_id, item.bbox, scan.zoom)
    if image is None:
        raise NotFoundError(f"no cached imagery of scan {scan.id} around chip {item.key!r}")
    return image.pixels


def _record_unit(item: Item, conn: sqlite3.Connection, label: str, label_from: str | None, user: str) -> int | None:
    """A sample unit's reference class(es) through ``area_review``; the replacement unit's id when one was drawn."""
    from amberwatch.results.area_review import record_reference

    if label == "skip":
        return None
    if item.from_scan_id is not None and label_from is None:
        raise InvalidInputError(
            f"label_from is missing: chip {item.key!r} is a unit of a change sample, give its class at the earlier"
            f" date ({item.dates[0] if item.dates else 'earlier scan'}) as well as at the later one"
        )
    return record_reference(conn, int(item.key.split("/")[1]), label, user, label_from).get("replacement_unit_id")


def _add_example(
    conn: sqlite3.Connection, cache: TileCache, item: Item, label: str, category: str | None, user: str
) -> tuple[int, bool]:
    """The item's chip in the example store (source 'label-page'): its id, and whether it was added (or re-included)."""
    store = ExampleStore(conn)
    lon, lat = item.bbox.center_deg
    example_id, created = store.add(
        item_chip(conn, cache, item),
        label,
        category=category if label == "not_mining" else None,
        lon=lon,
        lat=lat,
        imagery_date=example_date(item.capture_date),
        source="label-page",
        source_image=f"scan-{item.scan_id}",
        added_by=user,
    )
    if not created and store.get(example_id).status == "excluded":
        store.include([example_id])  # re-labelled after an undo
        created = True
    return example_id, created


def record_label(
    conn: sqlite3.Connection,
    cache: TileCache,
    key: str,
    label: str,
    *,
    user: str,
    category: str | None = None,
    label_from: str | None = None,
) -> dict:
    """Label (or skip) an item: adds the chip to the example store (source 'label-page') and logs the action.

    A sample unit's label is its reference class (a change sample's unit: ``label`` at the later date and
    ``label_from`` at the earlier); 'no_imagery' at any date takes it out of the sample and adds a replacement unit
    (its key as ``replacement_key``).
    """
    if label not in LABELS:
        raise InvalidInputError(f"unknown label {label!r}: expected one of {', '.join(LABELS)}")
    item = item_for_key(conn, key)
    if label == "no_imagery" and item.kind != "unit":
        raise InvalidInputError(f"label 'no_imagery' is for area sample units only, not the {item.kind} {key!r}")
    if label_from is not None and item.kind != "unit":
        raise InvalidInputError(f"label_from is for units of a change sample only, not the {item.kind} {key!r}")
    example_id, created, replacement = None, False, None
    if item.kind == "unit":
        replacement = _record_unit(item, conn, label, label_from, user)
    elif item.kind == "example":
        store = ExampleStore(conn)
        ex = store.get(int(key[1:]))
        example_id = ex.id
        if label not in ("skip", ex.label) and ex.status == "active":
            # The store keeps one label per image: a disagreeing reviewer takes the example out of training.
            store.exclude(ids=[ex.id], reason=f"labelled {label!r} (not {ex.label!r}) on the label page by {user}")
            created = True  # undo re-includes it
    elif label != "skip":
        example_id, created = _add_example(conn, cache, item, label, category, user)
    cur = conn.execute(
        "INSERT INTO web_label_actions (item_key, scan_id, label, example_id, created_example, user_name, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (key, item.scan_id, label, example_id, int(created), user, utc_now_iso()),
    )
    out = {"action_id": int(cur.lastrowid), "key": key, "label": label, "example_id": example_id, "created": created}
    if replacement is not None:
        out["replacement_key"] = f"u{key[1:].split('/')[0]}/{replacement}"
    return out


def undo_label(conn: sqlite3.Connection, action_id: int, *, user: str) -> dict:
    """Undo one labelling action: its item returns to the queue and an example it created is excluded."""
    row = conn.execute(
        "SELECT id, item_key, example_id, created_example, undone_at FROM web_label_actions WHERE id = ?",
        (int(action_id),),
    ).fetchone()
    if row is None:
        raise NotFoundError(f"label action {action_id!r} does not exist")
    if row["undone_at"] is not None:
        raise ConflictError(f"label action {action_id} is already undone")
    if row["example_id"] is not None and row["created_example"]:
        store = ExampleStore(conn)
        if row["item_key"].startswith("e"):
            store.include([int(row["example_id"])])
        else:
            store.exclude(ids=[int(row["example_id"])], reason=f"label undone on the label page by {user}")
    conn.execute("UPDATE web_label_actions SET undone_at = ? WHERE id = ?", (utc_now_iso(), int(action_id)))
    return {"action_id": int(action_id), "key": row["item_key"], "undone": True}


def labelled_count(conn: sqlite3.Connection, scan_id: int) -> int:
    """How many items of a scan have been labelled or skipped (not undone)."""
    return int(
        conn.execute(
            "SELECT COUNT(DISTINCT item_key) FROM web_label_actions WHERE scan_id = ? AND undone_at IS NULL", (scan_id,)
        ).fetchone()[0]
    )


def queue_tiles(conn: sqlite3.Connection, scan_id: int, tiles: Sequence[str], *, source: str, user: str) -> dict:
    """Put whole tiles ("z/x/y") of a scan on the labelling queue; tiles already queued are left as they are."""
    if not _SOURCE_RE.match(source or ""):
        raise InvalidInputError(f"queue source {source!r} must be 1-32 lower-case letters, digits, _ or -")
    if not tiles or len(tiles) > MAX_QUEUE_TILES:
        raise InvalidInputError(f"send 1..{MAX_QUEUE_TILES} tiles to the labelling queue, got {len(tiles)}")
    zoom = get_scan(conn, scan_id).zoom
    keys = []
    for tile in tiles:
        m = _TILE_RE.match(str(tile))
        if not m:
            raise InvalidInputError(f"tile {tile!r} must be 'z/x/y', e.g. '{zoom}/76354/44026'")
        z, x, y = (int(g) for g in m.groups())
        if z != zoom:
            raise InvalidInputError(f"tile {tile!r} is not at the zoom of scan {scan_id} ({zoom})")
        keys.append(_tile_item(conn, scan_id, z, x, y).key)  # NotFoundError for a tile outside the scan
    keys = list(dict.fromkeys(keys))
    now, added = utc_now_iso(), 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        for key in keys:
            added += conn.execute(
                "INSERT OR IGNORE INTO web_label_queue (item_key, scan_id, source, added_by, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (key, scan_id, source, user, now),
            ).rowcount
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return {"scan_id": scan_id, "queued": added, "already_queued": len(keys) - added, "keys": keys}


def _queued_items(
    conn: sqlite3.Connection, scan_id: int, skip: set[str], limit: int, source: str | None = None
) -> list[Item]:
    """Tiles sent to the scan's labelling queue (oldest first; only those of ``source`` when given), leaving out the
    keys in ``skip``."""
    items = []
    for key, src, added_by in conn.execute(
        "SELECT item_key, source, added_by FROM web_label_queue WHERE scan_id = ? ORDER BY id", (scan_id,)
    ):
        if key in skip or (source is not None and src != source):
            continue
        _, sid, z, x, y = parse_key(key)
        items.append(_tile_item(conn, sid, z, x, y, reason=_queue_reason(src, added_by)))
        if len(items) >= limit:
            break
    return items


def _queued_keys(conn: sqlite3.Connection, scan_id: int) -> set[str]:
    return {r[0] for r in conn.execute("SELECT item_key FROM web_label_queue WHERE scan_id = ?", (scan_id,))}


def confirmed_detection_ids(conn: sqlite3.Connection) -> list[int]:
    """Detections confirmed as mining: an accepted 'confirmed' flag, or labelled 'mining' on the label page."""
    confirmed = {d for d, state in review_states(conn).items() if state.confirmed}
    for (key,) in conn.execute(
        "SELECT item_key FROM web_label_actions WHERE item_key LIKE 'd%' AND label = 'mining' AND undone_at IS NULL"
    ):
        confirmed.add(int(key[1:]))
    return sorted(confirmed)


def _confirmed_query(conn: sqlite3.Connection, vectors: ScanVectors) -> tuple[list[np.ndarray], list[tuple], int]:
    """(embeddings under each confirmed site on the scan's tiles, those tiles' centres, confirmed sites in all)."""
    ids = confirmed_detection_ids(conn)
    like, centres = [], []
    for d in query_detections(conn, ids=ids) if ids else []:
        rows = tiles_under(vectors, d.bbox.as_tuple())
        if rows:
            like.append(vectors.vectors[rows])
            centres.extend(tile_centre(vectors.zoom, *(int(v) for v in vectors.xy[r])) for r in rows)
    return like, centres, len(ids)


def _no_site_note(scan_id: int, confirmed: int) -> str:
    if confirmed:
        return (
            f"None of the {confirmed} confirmed site(s) lies on a tile of scan {scan_id}:"
            " confirm a site in this scan to rank its tiles."
        )
    return (
        "No confirmed site yet: confirm a detection (accept a reader's 'confirmed' flag on /review, or label a"
        " detection 'mining' here) and its look-alikes will be ranked here."
    )


def like_items(
    conn: sqlite3.Connection, cache: VectorCache, scan_id: int, limit: int = 20
) -> tuple[list[Item], float, dict]:
    """Queued tiles first, then the scan's unlabelled tiles most like the confirmed sites; threshold; counts and note.

    The note (else None) says why no tile could be ranked: no confirmed site yet, or no embeddings in the scan.
    """
    thr = float(get_scan(conn, scan_id).model_threshold)
    done = _done_keys(conn, scan_id)
    items = _queued_items(conn, scan_id, done, limit)
    info: dict = {"queued": len(items), "confirmed": 0, "note": None}
    try:
        vectors, index = cache.get(conn, scan_id)
    except NotFoundError as exc:
        info["note"] = str(exc)
        return items, thr, info
    like, centres, confirmed = _confirmed_query(conn, vectors)
    info["confirmed"] = confirmed if like else 0
    if not like:
        info["note"] = _no_site_note(scan_id, confirmed)
        return items, thr, info
    skip = done | _queued_keys(conn, scan_id)
    for key in skip:
        if key.startswith(f"t{scan_id}/"):
            _, _, z, x, y = parse_key(key)
            centres.append(tile_centre(z, x, y))
    if len(items) < limit:
        dims = vectors.vectors.shape[1]
        query = Query(np.concatenate(like), np.zeros((0, dims), np.float16), tuple(centres))
        alike = []
        for p in rank_places(conn, vectors, query, top=limit - len(items), exclude_m=0.0, index=index):
            z, x, y = (int(v) for v in p.tile.split("/"))
            if f"t{scan_id}/{z}/{x}/{y}" not in skip:
                alike.append(_tile_item(conn, scan_id, z, x, y, reason=f"{p.score:.0%} like the confirmed sites"))
        items.extend(most_uncertain_first(alike, thr))
    return items, thr, info


def most_uncertain_first(items: list[Item], threshold: float) -> list[Item]:
    """Items nearest the threshold first (the learning curve's best use of a label, RESULTS.md round 12); items
    without a probability last, in their order."""
    return sorted(items, key=lambda it: abs(it.prob - threshold) if it.prob is not None else math.inf)


def _queue_reason(source: str, added_by: str) -> str:
    """Why a queued tile is in the queue, in words."""
    strategy = source.removeprefix("suggest-")
    if source.startswith("suggest-") and strategy in STRATEGY_WORDS:
        return f"picked by '{STRATEGY_WORDS[strategy]}' (queued by {added_by})"
    return f"sent to the queue ({source}) by {added_by}"


def _key_tiles(conn: sqlite3.Connection, key: str, scan_id: int, zoom: int) -> set[tuple[int, int]]:
    """(x, y) of the scan's tiles an item key covers: its tile, its cell's tile, or the tiles under its detection."""
    parsed = parse_key(key)
    if parsed[0] in ("t", "c") and parsed[1] == scan_id and parsed[2] == zoom:
        return {(parsed[3], parsed[4])}
    if parsed[0] == "d":
        return {
            (t.x, t.y)
            for d in query_detections(conn, ids=[parsed[1]])
            for t in mercantile.tiles(*d.bbox.as_tuple(), zoom)
        }
    return set()


def suggest_for_scan(conn: sqlite3.Connection, scan_id: int, strategy: str, count: int, seed: int = 0) -> Suggestions:
    """The next ``count`` tiles of a scan to label by ``strategy``: not labelled, skipped or queued yet; ``similar``
    relative to the confirmed sites on the scan's tiles."""
    zoom = get_scan(conn, scan_id).zoom
    labelled: set[tuple[int, int]] = set()
    for key in _done_keys(conn, scan_id) | _queued_keys(conn, scan_id):
        labelled |= _key_tiles(conn, key, scan_id, zoom)
    ids = confirmed_detection_ids(conn)
    positives = {
        (t.x, t.y)
        for d in (query_detections(conn, ids=ids) if ids else [])
        for t in mercantile.tiles(*d.bbox.as_tuple(), zoom)
    }
    return suggest_tiles(conn, scan_id, strategy, count, labelled=labelled, positives=positives, seed=seed)


def _check_strategy(strategy: str) -> None:
    if strategy not in SUGGEST_STRATEGIES:
        raise InvalidInputError(f"unknown label strategy {strategy!r}: expected one of {', '.join(SUGGEST_STRATEGIES)}")


def strategy_items(conn: sqlite3.Connection, scan_id: int, strategy: str, limit: int = 20) -> list[Item]:
    """Tiles a strategy put on the scan's queue (oldest first), not labelled or skipped yet."""
    _check_strategy(strategy)
    return _queued_items(conn, scan_id, _done_keys(conn, scan_id), limit, source=f"suggest-{strategy}")


def fill_queue(conn: sqlite3.Connection, scan_id: int, strategy: str, count: int, *, user: str) -> dict:
    """Top the scan's queue up to ``count`` tiles picked by ``strategy`` (still to label), picking only the missing."""
    _check_strategy(strategy)
    if not 1 <= count <= MAX_QUEUE_TILES:
        raise InvalidInputError(f"fill the labelling queue with 1..{MAX_QUEUE_TILES} tiles, got {count}")
    pending = len(strategy_items(conn, scan_id, strategy, count))
    out = {"scan_id": scan_id, "strategy": strategy, "words": STRATEGY_WORDS[strategy], "queued": 0, "note": None}
    if pending < count:
        found = suggest_for_scan(conn, scan_id, strategy, count - pending)
        tiles = [f"{t.z}/{t.x}/{t.y}" for t in found.tiles]
        if tiles:
            out["queued"] = queue_tiles(conn, scan_id, tiles, source=f"suggest-{strategy}", user=user)["queued"]
        out["note"] = found.note
    out["pending"] = pending + out["queued"]
    return out
