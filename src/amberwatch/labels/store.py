"""The labelled example store: image crops labelled mining / not_mining in the project DB (component ``labels``).

An example is identified by the sha256 of its decoded RGB pixels and shape, so the same image added
twice (as PNG, JPEG-free re-encode, or array) is one example. Pixels are kept as PNG bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import sqlite3
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, NamedTuple

import numpy as np
import shapely

from amberwatch.db import utc_now_iso
from amberwatch.errors import (
    ConflictError,
    ImageError,
    InvalidInputError,
    NotFoundError,
)
from amberwatch.imagery.aoi import read_aoi
from amberwatch.imagery.decode import decode_image, encode_png
from amberwatch.project import Component, Project, migrate_component

COMPONENT = "labels"
LABELS = ("mining", "not_mining")
CATEGORIES = (
    "forest",
    "clear-cut",
    "quarry",
    "field",
    "water",
    "settlement",
    "road",
    "snow",
    "cloud",
    "other",
)
STATUSES = ("active", "excluded")

MIGRATIONS: list[str] = [
    """
    CREATE TABLE examples (
        id INTEGER PRIMARY KEY,
        sha256 TEXT NOT NULL UNIQUE,        -- of decoded RGB pixels + shape (see pixel_sha256)
        label TEXT NOT NULL CHECK (label IN ('mining', 'not_mining')),
        category TEXT,                      -- forest, clear-cut, quarry, ... (mostly for negatives)
        lon REAL,
        lat REAL,
        imagery_date TEXT,                  -- ISO YYYY-MM-DD
        source TEXT NOT NULL,               -- import, review, label-page, texty, ...
        source_image TEXT,                  -- group key of the source image (Texty: 'LAT_LON')
        original_name TEXT,                 -- file name as imported, if any
        added_by TEXT NOT NULL,
        added_at TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'excluded')),
        exclude_reason TEXT,
        excluded_at TEXT,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL
    );
    CREATE INDEX examples_status_label ON examples (status, label);
    CREATE TABLE example_images (
        example_id INTEGER PRIMARY KEY REFERENCES examples(id) ON DELETE CASCADE,
        png BLOB NOT NULL
    );
    """,
]

_COLUMNS = (
    "id, sha256, label, category, lon, lat, imagery_date, source, source_image, added_by,"
    " added_at, status, exclude_reason, width, height"
)


@dataclass(frozen=True)
class Example:
    """One labelled image crop (metadata only; pixels via ``ExampleStore.pixels``)."""

    id: int
    sha256: str
    label: str
    category: str | None
    lon: float | None
    lat: float | None
    imagery_date: str | None
    source: str
    source_image: str | None
    added_by: str
    added_at: str
    status: str
    exclude_reason: str | None
    width: int
    height: int

    @property
    def located(self) -> bool:
        """True when the example has a lon/lat."""
        return self.lon is not None and self.lat is not None

    @property
    def block_key(self) -> str:
        """0.1-degree block ``B{floor(lat*10)}_{floor(lon*10)}`` when located, else ``I{source_image or sha256}``."""
        if self.lat is not None and self.lon is not None:
            return f"B{math.floor(self.lat * 10)}_{math.floor(self.lon * 10)}"
        return f"I{self.source_image or self.sha256}"


def pixel_sha256(pixels: np.ndarray) -> str:
    """sha256 of an HxWx3 uint8 array's shape and pixel bytes: the identity of an example."""
    # amberwatch.model.dataset.chips_fingerprint hashes folder chips with this too: fingerprints agree.
    h = hashlib.sha256(str(tuple(int(n) for n in pixels.shape)).encode("ascii"))
    h.update(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes())
    return h.hexdigest()


def check_label(label: str) -> str:
    """Return the label if it is 'mining' or 'not_mining', else raise InvalidInputError naming it."""
    if label not in LABELS:
        raise InvalidInputError(f"unknown label {label!r}: expected one of {', '.join(LABELS)}")
    return label


def check_category(category: str | None) -> str | None:
    """Return a known negative category (or None), else raise InvalidInputError naming it."""
    if category is None:
        return None
    if category not in CATEGORIES:
        raise InvalidInputError(f"unknown category {category!r}: expected one of {', '.join(CATEGORIES)}")
    return category


def check_status(status: str | None) -> str | None:
    """Return 'active', 'excluded' or None, else raise InvalidInputError naming it."""
    if status is not None and status not in STATUSES:
        raise InvalidInputError(f"unknown status {status!r}: expected one of {', '.join(STATUSES)}")
    return status


_ISO_DATE_PREFIX = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}")


def example_date(value: str | None) -> str | None:
    """A capture or layer date as an example's imagery date: its YYYY-MM-DD, or None for a year, a month or a release
    name (the store takes whole ISO dates only)."""
    return value[:10] if value and _ISO_DATE_PREFIX.match(value) else None


def _check_date(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(str(value)).isoformat()
    except ValueError as exc:
        raise InvalidInputError(f"imagery date {value!r} is not an ISO date YYYY-MM-DD") from exc


def _check_lon_lat(lon: float | None, lat: float | None) -> tuple[float | None, float | None]:
    if (lon is None) != (lat is None):
        raise InvalidInputError(f"give both lon and lat or neither (lon={lon!r}, lat={lat!r})")
    if lon is None or lat is None:
        return None, None
    try:
        lon_f, lat_f = float(lon), float(lat)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"lon/lat ({lon!r}, {lat!r}) are not numbers") from exc
    if not (math.isfinite(lon_f) and -180.0 <= lon_f <= 180.0):
        raise InvalidInputError(f"longitude {lon!r} is outside -180..180 degrees")
    if not (math.isfinite(lat_f) and -90.0 <= lat_f <= 90.0):
        raise InvalidInputError(f"latitude {lat!r} is outside -90..90 degrees")
    return lon_f, lat_f


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _is_rgb8_png(data: bytes) -> bool:
    """True for a PNG whose header says 8-bit truecolour without alpha: it decodes to exactly its RGB."""
    return len(data) > 26 and data[:8] == _PNG_SIGNATURE and data[12:16] == b"IHDR" and data[24:26] == b"\x08\x02"


def _as_rgb(image: bytes | np.ndarray, name: str) -> np.ndarray:
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ImageError(f"{name}: expected an HxWx3 uint8 array, got shape {image.shape} dtype {image.dtype}")
        if image.shape[0] < 1 or image.shape[1] < 1:
            raise ImageError(f"{name}: image has no pixels")
        return np.ascontiguousarray(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode_image(bytes(image), name)
    raise ImageError(f"{name}: expected image bytes or an array, got {type(image).__name__}")


def _row_to_example(row: sqlite3.Row) -> Example:
    return Example(
        id=int(row["id"]),
        sha256=row["sha256"],
        label=row["label"],
        category=row["category"],
        lon=row["lon"],
        lat=row["lat"],
        imagery_date=row["imagery_date"],
        source=row["source"],
        source_image=row["source_image"],
        added_by=row["added_by"],
        added_at=row["added_at"],
        status=row["status"],
        exclude_reason=row["exclude_reason"],
        width=int(row["width"]),
        height=int(row["height"]),
    )


class _Metadata(NamedTuple):
    """An example's checked metadata, in the column order of the INSERT and UPDATE in ``ExampleStore.add``."""

    category: str | None
    lon: float | None
    lat: float | None
    imagery_date: str | None
    source: str
    source_image: str | None
    name: str | None  # stored as original_name
    added_by: str


class ExampleStore:
    """Labelled examples in the project DB: add, read, list, exclude, summarise."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        """Wrap an open project DB connection (migrations must already be applied; see ``open``)."""
        self.conn = conn

    @classmethod
    def in_project(cls, project: Project) -> ExampleStore:
        """The example store of a project, on its connection (``project.store(ExampleStore)`` makes it once)."""
        project.migrate(SCHEMA)
        return cls(project.conn)

    @classmethod
    def open(cls, db_path: str | os.PathLike[str]) -> ExampleStore:
        """The example store of a project opened on db_path for this store alone (closing it closes the project)."""
        return Project.open(db_path).store(cls)

    def close(self) -> None:
        """Close the underlying connection."""
        self.conn.close()

    def __enter__(self) -> ExampleStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction around many ``add`` calls (nested use joins the outer one)."""
        if self.conn.in_transaction:
            yield
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def add(
        self,
        image: bytes | np.ndarray,
        label: str,
        *,
        category: str | None = None,
        lon: float | None = None,
        lat: float | None = None,
        imagery_date: str | None = None,
        source: str = "import",
        source_image: str | None = None,
        added_by: str = "cli",
        name: str | None = None,
        encoded: bytes | None = None,
    ) -> tuple[int, bool]:
        """Add an example; return (id, created). The same pixels again return the existing id.

        ``name`` is the file name (kept, and used in messages); ``encoded`` may carry the original
        file bytes of an already-decoded array so an 8-bit RGB PNG is stored without re-encoding.

        The same pixels stored with the other label raise ConflictError, unless that example is
        excluded: then it is relabelled with the new metadata, re-activated and reported as created.
        Raises ImageError for undecodable images, InvalidInputError for a bad label, category,
        date or position.
        """
        check_label(label)
        check_category(category)
        imagery_date = _check_date(imagery_date)
        lon, lat = _check_lon_lat(lon, lat)
        if not source:
            raise InvalidInputError("example source must not be empty")
        pixels = _as_rgb(image, name or "<image>")
        sha = pixel_sha256(pixels)
        # Re-encoding costs ~10 ms per crop; an 8-bit RGB PNG already holds exactly these pixels.
        raw = encoded if isinstance(image, np.ndarray) else bytes(image)
        png = raw if raw is not None and _is_rgb8_png(raw) else None
        meta = _Metadata(category, lon, lat, imagery_date, source, source_image, name, added_by)
        with self.transaction():
            row = self.conn.execute("SELECT id, label, status FROM examples WHERE sha256 = ?", (sha,)).fetchone()
            if row is not None:
                return self._add_existing(row, label, meta)
            example_id = self._insert(sha, label, meta, pixels, png)
        return example_id, True

    def _add_existing(self, row: sqlite3.Row, label: str, meta: _Metadata) -> tuple[int, bool]:
        """``add`` for pixels already stored: keep, refuse (ConflictError) or relabel an excluded example."""
        if row["label"] == label:
            return int(row["id"]), False
        if row["status"] != "excluded":
            raise ConflictError(
                f"{meta.name or 'image'} is already example {row['id']} labelled {row['label']!r}, not {label!r}"
            )
        # An excluded example labelled anew with the other label: relabel and re-activate it.
        self.conn.execute(
            "UPDATE examples SET label = ?, category = ?, lon = ?, lat = ?, imagery_date = ?,"
            " source = ?, source_image = ?, original_name = ?, added_by = ?, added_at = ?,"
            " status = 'active', exclude_reason = NULL, excluded_at = NULL WHERE id = ?",
            (label, *meta, utc_now_iso(), int(row["id"])),
        )
        return int(row["id"]), True

    def _insert(self, sha: str, label: str, meta: _Metadata, pixels: np.ndarray, png: bytes | None) -> int:
        """Insert a new example and its image (PNG-encoded here unless given); return its id."""
        cur = self.conn.execute(
            "INSERT INTO examples (sha256, label, category, lon, lat, imagery_date, source,"
            " source_image, original_name, added_by, added_at, width, height)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (sha, label, *meta, utc_now_iso(), int(pixels.shape[1]), int(pixels.shape[0])),
        )
        example_id = int(cur.lastrowid)
        if png is None:
            png = encode_png(pixels)
        self.conn.execute(
            "INSERT INTO example_images (example_id, png) VALUES (?, ?)",
            (example_id, png),
        )
        return example_id

    def get(self, example_id: int) -> Example:
        """The example with this id, or NotFoundError."""
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM examples WHERE id = ?", (int(example_id),)).fetchone()
        if row is None:
            raise NotFoundError(f"example {example_id!r} does not exist")
        return _row_to_example(row)

    def original_name(self, example_id: int) -> str | None:
        """The file name the example was imported from, if any."""
        row = self.conn.execute("SELECT original_name FROM examples WHERE id = ?", (int(example_id),)).fetchone()
        if row is None:
            raise NotFoundError(f"example {example_id!r} does not exist")
        return row["original_name"]

    def png(self, example_id: int) -> bytes:
        """The stored PNG bytes of an example, or NotFoundError."""
        row = self.conn.execute("SELECT png FROM example_images WHERE example_id = ?", (int(example_id),)).fetchone()
        if row is None:
            raise NotFoundError(f"example {example_id!r} does not exist")
        return bytes(row["png"])

    def pixels(self, example_id: int) -> np.ndarray:
        """The example's pixels as an HxWx3 uint8 array, or NotFoundError."""
        return decode_image(self.png(example_id), f"example {example_id}")

    def examples(self, *, status: str | None = "active", label: str | None = None) -> list[Example]:
        """Examples ordered by id, filtered by status (None = any) and label (None = any)."""
        check_status(status)
        if label is not None:
            check_label(label)
        sql, args = f"SELECT {_COLUMNS} FROM examples WHERE 1 = 1", []
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        if label is not None:
            sql += " AND label = ?"
            args.append(label)
        return [_row_to_example(r) for r in self.conn.execute(sql + " ORDER BY id", args)]

    def iter_pixels(self, examples: Sequence[Example]) -> Iterator[tuple[Example, np.ndarray]]:
        """Yield (example, HxWx3 uint8 pixels) for each given example, in order."""
        for ex in examples:
            yield ex, self.pixels(ex.id)

    def exclude(
        self,
        *,
        ids: Sequence[int] | None = None,
        category: str | None = None,
        area_geojson: dict[str, Any] | str | os.PathLike[str] | None = None,
        reason: str,
    ) -> int:
        """Exclude active examples matching ALL given selectors; return how many changed.

        ``ids`` must all exist (NotFoundError names the missing ones). ``area_geojson`` is a GeoJSON
        dict, JSON text or a file path (FeatureCollection / Feature / geometry of polygons); located
        examples whose point lies inside or on any polygon match.
        """
        if not reason or not str(reason).strip():
            raise InvalidInputError("an exclusion needs a non-empty reason")
        if ids is None and category is None and area_geojson is None:
            raise InvalidInputError("exclude needs ids, a category or an area")
        check_category(category)
        candidates = self.examples(status="active")
        if ids is not None:
            wanted = {int(i) for i in ids}
            existing = {int(r[0]) for r in self.conn.execute("SELECT id FROM examples")}
            missing = sorted(wanted - existing)
            if missing:
                raise NotFoundError(f"example id(s) {', '.join(map(str, missing))} do not exist")
            candidates = [ex for ex in candidates if ex.id in wanted]
        if category is not None:
            candidates = [ex for ex in candidates if ex.category == category]
        if area_geojson is not None:
            area = read_aoi(area_geojson, polygons_only=True).geometry
            shapely.prepare(area)
            candidates = [ex for ex in candidates if ex.located and _covers(area, ex.lon, ex.lat)]
        if not candidates:
            return 0
        now = utc_now_iso()
        with self.transaction():
            self.conn.executemany(
                "UPDATE examples SET status = 'excluded', exclude_reason = ?, excluded_at = ?"
                " WHERE id = ? AND status = 'active'",
                [(str(reason), now, ex.id) for ex in candidates],
            )
        return len(candidates)

    def include(self, ids: Sequence[int]) -> int:
        """Re-activate excluded examples; return how many changed (NotFoundError for unknown ids)."""
        for i in ids:
            self.get(i)
        with self.transaction():
            cur = self.conn.executemany(
                "UPDATE examples SET status = 'active', exclude_reason = NULL, excluded_at = NULL"
                " WHERE id = ? AND status = 'excluded'",
                [(int(i),) for i in ids],
            )
        return int(cur.rowcount)

    def stats(self, top_blocks: int | None = None) -> dict:
        """Counts: total/active/excluded, and over active examples by label, category, year, block.

        Missing values count under 'none' (category) or 'unknown' (year). ``by_block`` is ordered by
        count, descending (only the first ``top_blocks`` when given); ``blocks`` is the number of
        distinct blocks and ``located`` the number of active examples with a position.
        """
        all_ex = self.examples(status=None)
        active = [ex for ex in all_ex if ex.status == "active"]
        by_label = Counter({label: 0 for label in LABELS})
        by_label.update(ex.label for ex in active)
        by_category: dict[str, dict[str, int]] = {}
        for ex in active:
            cat = ex.category or "none"
            by_category.setdefault(cat, {label: 0 for label in LABELS})[ex.label] += 1
        by_year: dict[str, dict[str, int]] = {}
        for ex in active:
            year = ex.imagery_date[:4] if ex.imagery_date else "unknown"
            by_year.setdefault(year, {label: 0 for label in LABELS})[ex.label] += 1
        by_block: dict[str, dict[str, int]] = {}
        for ex in active:
            by_block.setdefault(ex.block_key, {label: 0 for label in LABELS})[ex.label] += 1
        blocks_sorted = sorted(by_block.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
        if top_blocks is not None:
            blocks_sorted = blocks_sorted[:top_blocks]
        return {
            "total": len(all_ex),
            "active": len(active),
            "excluded": len(all_ex) - len(active),
            "located": sum(1 for ex in active if ex.located),
            "by_label": dict(by_label),
            "by_category": dict(sorted(by_category.items())),
            "by_year": dict(sorted(by_year.items())),
            "blocks": len(by_block),
            "blocks_with_mining": sum(1 for v in by_block.values() if v["mining"]),
            "source_images": len({ex.source_image or ex.sha256 for ex in active}),
            "by_block": {k: {**v, "total": sum(v.values())} for k, v in blocks_sorted},
            "by_source": dict(sorted(Counter(ex.source for ex in active).items())),
        }

    def fingerprint(self, examples: Sequence[Example]) -> str:
        """sha256 over the sorted (sha256, label) pairs: identifies a training set's content."""
        h = hashlib.sha256()
        for sha, label in sorted((ex.sha256, ex.label) for ex in examples):
            h.update(f"{sha}:{label}\n".encode("ascii"))
        return h.hexdigest()


SCHEMA = Component(COMPONENT, MIGRATIONS)


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create or upgrade the example tables on a bare connection (a Project: ``migrate(SCHEMA)``)."""
    migrate_component(conn, SCHEMA)


def _covers(area: Any, lon: float | None, lat: float | None) -> bool:
    return bool(shapely.intersects_xy(area, lon, lat))
