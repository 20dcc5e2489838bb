"""The project database: one SQLite file, opened one way, with per-component versioned migrations.

Each stage (labels, scan, web, ...) owns its tables and declares them as an ordered list of
migration scripts; ``migrate(conn, component, scripts)`` applies the ones not yet applied.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from amberwatch.errors import DatabaseBusyError, DatabaseError

DEFAULT_DB_PATH = "amberwatch.db"
DB_ENV_VAR = "AMBERWATCH_DB"
BUSY_TIMEOUT_S = 30.0


def resolve_db_path(db: str | os.PathLike[str] | None = None) -> Path:
    """Return the project DB path: the argument, else $AMBERWATCH_DB, else ./amberwatch.db."""
    if db:
        return Path(db)
    return Path(os.environ.get(DB_ENV_VAR) or DEFAULT_DB_PATH)


def existing_db_path(db: str | os.PathLike[str] | None = None) -> Path:
    """The project DB path (as resolve_db_path gives it), or DatabaseError when the file does not exist."""
    path = resolve_db_path(db)
    if not path.exists():
        raise DatabaseError(f"project database {str(path)!r} does not exist")
    return path


def utc_now_iso() -> str:
    """Current UTC time as an ISO-8601 string with seconds precision."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def connect(
    path: str | os.PathLike[str], *, create: bool = True, busy_timeout_s: float = BUSY_TIMEOUT_S
) -> sqlite3.Connection:
    """Open (or create) the project DB with WAL, foreign keys and a busy timeout (how long a write waits for a lock)."""
    p = Path(path)
    if not create and not p.exists():
        raise DatabaseError(f"project database {str(p)!r} does not exist")
    if p.parent and not p.parent.exists():
        raise DatabaseError(f"folder {str(p.parent)!r} for project database {str(p)!r} does not exist")
    try:
        conn = sqlite3.connect(str(p), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " component TEXT NOT NULL, version INTEGER NOT NULL, applied_at TEXT NOT NULL,"
            " PRIMARY KEY (component, version))"
        )
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(f"cannot open project database {str(p)!r}: {exc}") from exc
    return conn


def busy_error(exc: sqlite3.Error, path: str | os.PathLike[str] | None = None) -> DatabaseBusyError | None:
    """The DatabaseBusyError an SQLite "database is locked / busy" error means, or None for any other error.

    ``path`` names the DB in the message; leave it out where the message is shown to the public (the web).
    """
    message = str(exc).lower()
    if not isinstance(exc, sqlite3.OperationalError) or not ("database is locked" in message or "is busy" in message):
        return None
    name = f"project database {str(path)!r}" if path is not None else "the project database"
    return DatabaseBusyError(f"{name} is locked by another writer ({exc}): try again shortly")


def schema_version(conn: sqlite3.Connection, component: str) -> int:
    """Highest migration version applied for a component (0 if none)."""
    row = conn.execute("SELECT MAX(version) FROM schema_migrations WHERE component = ?", (component,)).fetchone()
    return int(row[0] or 0)


def migrate(conn: sqlite3.Connection, component: str, scripts: Sequence[str]) -> int:
    """Apply a component's migration scripts not yet applied, each in its own transaction.

    ``scripts[i]`` is version ``i + 1``. Returns the resulting version. A DB whose version is
    newer than the code knows is refused rather than silently misread.
    """
    current = schema_version(conn, component)
    if current > len(scripts):
        raise DatabaseError(
            f"database schema for {component!r} is version {current}, newer than this amberwatch "
            f"understands ({len(scripts)}); upgrade amberwatch"
        )
    for version in range(current + 1, len(scripts) + 1):
        try:
            conn.execute("BEGIN IMMEDIATE")
            # Re-check inside the write lock: another process may have migrated meanwhile.
            if schema_version(conn, component) >= version:
                conn.execute("COMMIT")
                continue
            for statement in _split_sql(scripts[version - 1]):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (component, version, applied_at) VALUES (?, ?, ?)",
                (component, version, utc_now_iso()),
            )
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            conn.execute("ROLLBACK")
            raise DatabaseError(f"migration {component!r} v{version} failed: {exc}") from exc
    return len(scripts)


def _split_sql(script: str) -> list[str]:
    statements, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                statements.append(buf.strip())
            buf = ""
    if buf.strip():
        statements.append(buf.strip())
    return statements
