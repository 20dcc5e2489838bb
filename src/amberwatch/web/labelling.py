"""The labelling page's queue: the scan's most uncertain chips and their labels.

The most uncertain chips are those with a probability closest to the model threshold.

Items are keyed ``d<detection id>`` (a detection), ``c<scan>/<z>/<x>/<y>/<row>/<col>`` (one cell of a
tile's probability grid), ``u<sample>/<unit>`` (a unit of an area sample, reviewed blind to the map) or
``e<example id>`` (an example already in the store, e.g. imported: checking its label).
Chips are rendered from the tile cache. Labels of detections and cells go to the example store; a sample
unit's label is its reference class (through ``amberwatch.results.area_review``) and is kept out of the
training examples so the accuracy assessment stays independent of training.
"""

from __future__ import annotations

import heapq
import re
import sqlite3
from dataclasses import dataclass

import mercantile
import numpy as np

from amberwatch.db import utc_now_iso
from amberwatch.errors import ConflictError, InvalidInputError, NotFoundError
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.types import LngLatBbox
from amberwatch.labels.store import Example, ExampleStore
from amberwatch.results.store import get_scan, grid_tiles, query_detections, tile_grid
from amberwatch.results.store import latest_scan_id as store_latest_scan_id
from amberwatch.web.chips import detection_chip, padded_bbox, render_from_cache

LABELS = ("mining", "not_mining", "skip")
CELL_MARGIN = 0.25  # only tiles whose max probability is within this of the threshold can hold candidate cells
_KEY_RE = re.compile(r"^(?:d(\d+)|c(\d+)/(\d+)/(\d+)/(\d+)/(\d+)/(\d+)|u(\d+)/(\d+)|e(\d+))$")


@dataclass(frozen=True)
class Item:
    """One chip to label."""

    key: str
    scan_id: int | None  # None for store examples
    prob: float | None  # None for sample units (reviewed blind to the map) and store examples
    bbox: LngLatBbox
    capture_date: str | None
    located: bool = True

    @property
    def kind(self) -> str:
        """'detection', 'cell' or 'unit'."""
        return {"d": "detection", "c": "cell", "u": "unit", "e": "example"}[self.key[0]]

    @property
    def chip_bbox(self) -> LngLatBbox:
        """The area the chip shows: the item with a margin (a cell gets its neighbours for context)."""
        return padded_bbox(*self.bbox.as_tuple(), pad_frac=0.25 if self.key.startswith("d") else 1.0)

    def outline(self) -> list[float]:
        """The item's box within its chip as fractions [left, top, right, bottom] of the chip's width and height."""
        c, b = self.chip_bbox, self.bbox
        w, h = c.east_deg - c.west_deg, c.north_deg - c.south_deg
        return [
            round(v, 4)
            for v in (
                (b.west_deg - c.west_deg) / w,
                (c.north_deg - b.north_deg) / h,
                (b.east_deg - c.west_deg) / w,
                (c.north_deg - b.south_deg) / h,
            )
        ]

    def as_dict(self, threshold: float | None) -> dict:
        """JSON-ready form for the page."""
        lon, lat = self.bbox.center_deg
        return {
            "key": self.key,
            "kind": self.kind,
            "scan_id": self.scan_id,
            "prob": None if self.prob is None else round(self.prob, 4),
            "threshold": threshold,
            "lon": round(lon, 6) if self.located else None,
            "lat": round(lat, 6) if self.located else None,
            "capture_date": self.capture_date,
            "chip_url": f"/api/label/chip.jpg?key={self.key}",
            "outline": None if self.kind == "example" else self.outline(),  # an example is the whole chip
        }


def parse_key(key: str) -> tuple:
    """('d', detection), ('c', scan, z, x, y, row, col), ('u', sample, unit) or ('e', example).

    InvalidInputError naming a malformed key.
    """
    m = _KEY_RE.match(key or "")
    if not m:
        raise InvalidInputError(
            f"unknown chip key {key!r}: expected d<ID>, c<SCAN>/<Z>/<X>/<Y>/<ROW>/<COL>, u<SAMPLE>/<UNIT> or e<EXAMPLE>"
        )
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


def uncertain_items(conn: sqlite3.Connection, scan_id: int, limit: int = 20) -> tuple[list[Item], float]:
    """The scan's not-yet-labelled items closest to the model threshold, and the threshold.

    The items are detections and grid cells.
    """
    scan = get_scan(conn, scan_id)
    thr = float(scan["model_threshold"])
    done = {
        r[0]
        for r in conn.execute(
            "SELECT item_key FROM web_label_actions WHERE scan_id = ? AND undone_at IS NULL", (scan_id,)
        )
    }
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
        offer(
            Item(
                f"d{d['id']}",
                scan_id,
                float(d["mean_prob"]),
                LngLatBbox(d["west"], d["south"], d["east"], d["north"]),
                d["capture_date"],
            )
        )
    for t in grid_tiles(conn, scan_id, min_max_prob=thr - CELL_MARGIN):
        n = int(t["grid_cells"])
        grid = np.frombuffer(bytes(t["grid"]), dtype=np.uint8)
        if grid.size != n * n:
            continue
        dist = np.abs(grid.astype(np.float32) / 255.0 - thr)
        best = np.argsort(dist, kind="stable")[:limit]
        for idx in best:
            if dist[idx] > CELL_MARGIN:
                break
            row, col = divmod(int(idx), n)
            key = f"c{scan_id}/{t['z']}/{t['x']}/{t['y']}/{row}/{col}"
            offer(
                Item(
                    key,
                    scan_id,
                    float(grid[idx]) / 255.0,
                    cell_bbox(t["z"], t["x"], t["y"], row, col, n),
                    t["capture_date"],
                )
            )
    return [e[2] for e in sorted(heap, reverse=True)], thr


def _unit_item(sample_id: int, unit: dict, scan_id: int) -> Item:
    return Item(
        f"u{sample_id}/{unit['unit_id']}",
        scan_id,
        None,
        LngLatBbox(unit["west"], unit["south"], unit["east"], unit["north"]),
        None,
    )


def sample_items(conn: sqlite3.Connection, sample_id: int, limit: int = 20) -> tuple[list[Item], int, int]:
    """Units of an area sample still without a reference class (skipped ones last): items, scan id, reviewed count."""
    from amberwatch.results.area_review import pending_units
    from amberwatch.results.sampling import load_sample, sample_units

    scan_id = int(load_sample(conn, sample_id).scan_id)
    skipped = {
        r[0]
        for r in conn.execute(
            "SELECT item_key FROM web_label_actions WHERE item_key LIKE ? AND label = 'skip' AND undone_at IS NULL",
            (f"u{sample_id}/%",),
        )
    }
    items = [_unit_item(sample_id, u, scan_id) for u in pending_units(conn, sample_id)]
    items.sort(key=lambda it: it.key in skipped)
    reviewed = sum(1 for u in sample_units(conn, sample_id) if u["reference_class"] is not None)
    return items[:limit], scan_id, reviewed


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
        from amberwatch.results.sampling import load_sample, sample_units

        _, sample_id, unit_id = parsed
        scan_id = int(load_sample(conn, sample_id).scan_id)
        unit = next((u for u in sample_units(conn, sample_id) if u["unit_id"] == unit_id), None)
        if unit is None:
            raise NotFoundError(f"unit {unit_id} of chip {key!r} is not in area sample {sample_id}")
        return _unit_item(sample_id, unit, scan_id)
    if parsed[0] == "d":
        found = query_detections(conn, ids=[parsed[1]])
        if not found:
            raise NotFoundError(f"detection {parsed[1]} of chip {key!r} does not exist")
        d = found[0]
        return Item(
            key,
            int(d["scan_id"]),
            float(d["mean_prob"]),
            LngLatBbox(d["west"], d["south"], d["east"], d["north"]),
            d["capture_date"],
        )
    _, scan_id, z, x, y, row, col = parsed
    t = tile_grid(conn, scan_id, z, x, y)
    if t is None or not t["grid_cells"] or t["grid"] is None:
        raise NotFoundError(f"tile {z}/{x}/{y} of chip {key!r} has no probability grid in scan {scan_id}")
    n = int(t["grid_cells"])
    if not (0 <= row < n and 0 <= col < n):
        raise NotFoundError(f"cell {row}/{col} of chip {key!r} is outside the {n}x{n} grid")
    prob = float(np.frombuffer(bytes(t["grid"]), dtype=np.uint8)[row * n + col]) / 255.0
    return Item(key, scan_id, prob, cell_bbox(z, x, y, row, col, n), t["capture_date"])


def item_chip(conn: sqlite3.Connection, cache: TileCache, item: Item) -> np.ndarray:
    """Pixels of an item's chip: detections as on the map, cells as a small square of cached imagery around the cell."""
    if item.kind == "detection":
        return detection_chip(conn, cache, int(item.key[1:]))
    if item.kind == "example":
        return ExampleStore(conn).pixels(int(item.key[1:]))
    scan = get_scan(conn, item.scan_id)
    pixels = render_from_cache(cache, scan["imagery_source_id"], item.chip_bbox, int(scan["zoom"]))
    if pixels is None:
        raise NotFoundError(f"no cached imagery for chip {item.key!r}")
    return pixels


def record_label(
    conn: sqlite3.Connection, cache: TileCache, key: str, label: str, *, user: str, category: str | None = None
) -> dict:
    """Label (or skip) an item: adds the chip to the example store (source 'label-page') and logs the action."""
    if label not in LABELS:
        raise InvalidInputError(f"unknown label {label!r}: expected one of {', '.join(LABELS)}")
    item = item_for_key(conn, key)
    example_id, created = None, False
    if item.kind == "unit":
        if label != "skip":
            from amberwatch.results.area_review import record_reference

            record_reference(conn, int(key.split("/")[1]), label, user)
    elif item.kind == "example":
        store = ExampleStore(conn)
        ex = store.get(int(key[1:]))
        example_id = ex.id
        if label not in ("skip", ex.label) and ex.status == "active":
            # The store keeps one label per image: a disagreeing reviewer takes the example out of training.
            store.exclude(ids=[ex.id], reason=f"labelled {label!r} (not {ex.label!r}) on the label page by {user}")
            created = True  # undo re-includes it
    elif label != "skip":
        store = ExampleStore(conn)
        lon, lat = item.bbox.center_deg
        example_id, created = store.add(
            item_chip(conn, cache, item),
            label,
            category=category if label == "not_mining" else None,
            lon=lon,
            lat=lat,
            imagery_date=item.capture_date[:10] if item.capture_date else None,
            source="label-page",
            source_image=f"scan-{item.scan_id}",
            added_by=user,
        )
        if not created and store.get(example_id).status == "excluded":
            store.include([example_id])  # re-labelled after an undo
            created = True
    cur = conn.execute(
        "INSERT INTO web_label_actions (item_key, scan_id, label, example_id, created_example, user_name, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (key, item.scan_id, label, example_id, int(created), user, utc_now_iso()),
    )
    return {"action_id": int(cur.lastrowid), "key": key, "label": label, "example_id": example_id, "created": created}


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
