"""The tile cache: every fetched tile stored once in one SQLite file, shared by scans, map and story.

Tiles are keyed by (source id, z, x, y); a source id names one imagery date or release of a source (see
``imagery.types.ImageryRef``), so the same URL template at two dates has two entries per tile. The file is plain
SQLite, not MBTiles: ``<db stem>-tiles.sqlite`` (projects made before it was renamed keep ``-tiles.mbtiles``).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from amberwatch.db import connect, migrate, utc_now_iso


@dataclass(frozen=True)
class CachedTile:
    """One cached tile: 'ok' with its encoded image as served, or 'empty' (the server had no imagery there)."""

    status: str
    data: bytes | None
    content_type: str | None
    capture_date: str | None

    @property
    def image(self) -> bytes | None:
        """The encoded image when the tile has imagery, else None."""
        return self.data if self.status == "ok" and self.data is not None else None


@dataclass(frozen=True)
class OverviewTile:
    """A stored overview tile and the number of base tiles it was built from."""

    data: bytes
    content_type: str
    n_base: int


MIGRATIONS: list[str] = [
    """
    CREATE TABLE tiles (
        source_id TEXT NOT NULL,
        z INTEGER NOT NULL,
        x INTEGER NOT NULL,
        y INTEGER NOT NULL,              -- XYZ row (top origin), not TMS
        status TEXT NOT NULL,            -- ok | empty (404 / blank: no imagery)
        data BLOB,                       -- encoded image as served (PNG/JPEG/WebP); NULL when empty
        content_type TEXT,
        capture_date TEXT,
        fetched_at TEXT NOT NULL,
        PRIMARY KEY (source_id, z, x, y)
    );
    CREATE TABLE sources (
        source_id TEXT PRIMARY KEY,
        spec TEXT NOT NULL,              -- URL template / preset / path, with secrets removed
        attribution TEXT
    );
    """,
    # Overviews (imagery/overview.py): lower-zoom tiles built from a source's tiles at base_z, like gdaladdo.
    # n_base counts the base tiles under a tile when it was built: a different count now means it is stale.
    """
    CREATE TABLE overview_tiles (
        source_id TEXT NOT NULL,
        base_z INTEGER NOT NULL,
        z INTEGER NOT NULL,
        x INTEGER NOT NULL,
        y INTEGER NOT NULL,
        data BLOB NOT NULL,
        content_type TEXT NOT NULL,
        n_base INTEGER NOT NULL,
        built_at TEXT NOT NULL,
        PRIMARY KEY (source_id, base_z, z, x, y)
    );
    """,
    # v3: a source id names one imagery date or release of a source: base_source_id is the source's undated id,
    # imagery_date its date or release (NULL: undated). Sources cached before are their source's undated ref.
    """
    ALTER TABLE sources ADD COLUMN base_source_id TEXT;
    ALTER TABLE sources ADD COLUMN imagery_date TEXT;
    UPDATE sources SET base_source_id = source_id;
    CREATE INDEX sources_base ON sources (base_source_id);
    """,
    # v4: small documents a source reads before its tiles (the Wayback release list), fetched once per URL.
    """
    CREATE TABLE source_documents (
        url TEXT PRIMARY KEY,
        body BLOB NOT NULL,
        fetched_at TEXT NOT NULL
    );
    """,
]


class TileCache:
    """A thread-safe SQLite store of encoded tiles keyed by (source_id, z, x, y)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Open or create the cache file."""
        self.path = Path(path)
        self._conn = connect(self.path, name=f"tile cache {str(self.path)!r}")
        migrate(self._conn, "tile_cache", MIGRATIONS)
        self._lock = threading.Lock()

    def get(self, source_id: str, z: int, x: int, y: int) -> CachedTile | None:
        """The cached tile or None when never fetched."""
        with self._lock:
            row = self._conn.execute(
                "SELECT status, data, content_type, capture_date FROM tiles"
                " WHERE source_id = ? AND z = ? AND x = ? AND y = ?",
                (source_id, z, x, y),
            ).fetchone()
        if row is None:
            return None
        data = None if row["data"] is None else bytes(row["data"])
        return CachedTile(row["status"], data, row["content_type"], row["capture_date"])

    def put(
        self,
        source_id: str,
        z: int,
        x: int,
        y: int,
        data: bytes | None,
        *,
        status: str = "ok",
        content_type: str | None = None,
        capture_date: str | None = None,
    ) -> None:
        """Store a tile (or an 'empty' marker) once; a later put replaces it."""
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO tiles"
                " (source_id, z, x, y, status, data, content_type, capture_date, fetched_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (source_id, z, x, y, status, data, content_type, capture_date, utc_now_iso()),
            )

    def register_source(
        self,
        source_id: str,
        spec: str,
        attribution: str | None = None,
        base_source_id: str | None = None,
        imagery_date: str | None = None,
    ) -> None:
        """Remember which spec (secrets removed), undated source and imagery date or release a source id stands for."""
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO sources (source_id, spec, attribution, base_source_id, imagery_date)"
                " VALUES (?, ?, ?, ?, ?)",
                (source_id, spec, attribution, base_source_id or source_id, imagery_date),
            )

    def imagery_dates(self, base_source_id: str) -> dict[str, str | None]:
        """Source id -> imagery date or release (None: undated) of every cached ref of one source."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT source_id, imagery_date FROM sources WHERE base_source_id = ? ORDER BY source_id",
                (base_source_id,),
            ).fetchall()
        return {str(r[0]): r[1] for r in rows}

    def get_document(self, url: str) -> bytes | None:
        """The stored body of a source document (e.g. the Wayback config) fetched from ``url``, or None."""
        with self._lock:
            row = self._conn.execute("SELECT body FROM source_documents WHERE url = ?", (url,)).fetchone()
        return None if row is None else bytes(row[0])

    def put_document(self, url: str, body: bytes) -> None:
        """Store (or replace) the body of a source document fetched from ``url``."""
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO source_documents (url, body, fetched_at) VALUES (?, ?, ?)",
                (url, body, utc_now_iso()),
            )

    def source_spec(self, source_id: str) -> str | None:
        """The registered (secret-free) spec of a source id, or None when unknown."""
        with self._lock:
            row = self._conn.execute("SELECT spec FROM sources WHERE source_id = ?", (source_id,)).fetchone()
        return None if row is None else str(row[0])

    def zoom_range(self, source_id: str) -> tuple[int, int] | None:
        """(min_zoom, max_zoom) of the cached tiles of a source, or None when it has none."""
        with self._lock:
            row = self._conn.execute("SELECT MIN(z), MAX(z) FROM tiles WHERE source_id = ?", (source_id,)).fetchone()
        return None if row is None or row[0] is None else (int(row[0]), int(row[1]))

    def count(self, source_id: str | None = None) -> int:
        """Number of cached tiles, optionally for one source."""
        with self._lock:
            if source_id is None:
                return int(self._conn.execute("SELECT COUNT(*) FROM tiles").fetchone()[0])
            return int(self._conn.execute("SELECT COUNT(*) FROM tiles WHERE source_id = ?", (source_id,)).fetchone()[0])

    def count_ok_in(self, source_id: str, z: int, x_range: range, y_range: range) -> int:
        """Number of cached 'ok' tiles of a source at zoom ``z`` with x in ``x_range`` and y in ``y_range``."""
        with self._lock:
            row = self._conn.execute(
                "SELECT COUNT(*) FROM tiles WHERE source_id = ? AND z = ? AND x >= ? AND x < ? AND y >= ? AND y < ?"
                " AND status = 'ok'",
                (source_id, z, x_range.start, x_range.stop, y_range.start, y_range.stop),
            ).fetchone()
        return int(row[0])

    def ok_tiles(self, source_id: str, z: int) -> list[tuple[int, int]]:
        """(x, y) of every cached 'ok' tile of a source at zoom ``z``."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT x, y FROM tiles WHERE source_id = ? AND z = ? AND status = 'ok'", (source_id, z)
            ).fetchall()
        return [(int(x), int(y)) for x, y in rows]

    def get_overview(self, source_id: str, base_z: int, z: int, x: int, y: int) -> OverviewTile | None:
        """A stored overview tile built from ``base_z`` tiles, or None."""
        with self._lock:
            row = self._conn.execute(
                "SELECT data, content_type, n_base FROM overview_tiles"
                " WHERE source_id = ? AND base_z = ? AND z = ? AND x = ? AND y = ?",
                (source_id, base_z, z, x, y),
            ).fetchone()
        return None if row is None else OverviewTile(bytes(row["data"]), str(row["content_type"]), int(row["n_base"]))

    def put_overview(
        self, source_id: str, base_z: int, z: int, x: int, y: int, data: bytes, content_type: str, n_base: int
    ) -> None:
        """Store (or replace) an overview tile and the number of base tiles it was built from."""
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO overview_tiles"
                " (source_id, base_z, z, x, y, data, content_type, n_base, built_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (source_id, base_z, z, x, y, data, content_type, n_base, utc_now_iso()),
            )

    def close(self) -> None:
        """Close the underlying connection."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> TileCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
