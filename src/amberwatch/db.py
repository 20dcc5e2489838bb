"""The project database: one SQLite file, opened one way, with per-component versioned migrations.

Each stage (labels, scan, web, ...) owns its tables and declares them as an ordered list of
migration scripts; ``migrate(conn, component, scripts)`` applies the ones not yet applied.
``storage_error`` is the one place where a locked or full SQLite file, or a full disk under any file, becomes a
typed error: connections from ``connect`` apply it to every statement, ``writing`` to a block that writes a file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from amberwatch.errors import AmberwatchError, DatabaseBusyError, DatabaseError, StorageFullError

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


class StorageConnection(sqlite3.Connection):
    """A connection whose statements raise DatabaseBusyError / StorageFullError naming its file (``storage_name``)."""

    storage_name = "the project database"

    def execute(self, sql: str, parameters=(), /) -> sqlite3.Cursor:
        """sqlite3's execute, with storage errors typed; a ROLLBACK after SQLite already rolled back does nothing."""
        if not self.in_transaction and sql.strip().upper() == "ROLLBACK":
            # SQLite ends the transaction itself on some errors (SQLITE_FULL among them): the caller's ROLLBACK
            # must not replace the error that caused it with "no transaction is active".
            return self.cursor()
        with _typed(self.storage_name):
            return super().execute(sql, parameters)

    def executemany(self, sql: str, parameters, /) -> sqlite3.Cursor:
        """sqlite3's executemany, with storage errors typed."""
        with _typed(self.storage_name):
            return super().executemany(sql, parameters)

    def executescript(self, script: str, /) -> sqlite3.Cursor:
        """sqlite3's executescript, with storage errors typed."""
        with _typed(self.storage_name):
            return super().executescript(script)

    def commit(self) -> None:
        """sqlite3's commit, with storage errors typed."""
        with _typed(self.storage_name):
            super().commit()


def connect(
    path: str | os.PathLike[str],
    *,
    create: bool = True,
    busy_timeout_s: float = BUSY_TIMEOUT_S,
    name: str | None = None,
) -> sqlite3.Connection:
    """Open (or create) the project DB with WAL, foreign keys and a busy timeout (how long a write waits for a lock).

    ``name`` is how storage errors call the file (default: ``project database '<path>'``; the web leaves the path
    out of what it shows the public).
    """
    p = Path(path)
    if not create and not p.exists():
        raise DatabaseError(f"project database {str(p)!r} does not exist")
    if p.parent and not p.parent.exists():
        raise DatabaseError(f"folder {str(p.parent)!r} for project database {str(p)!r} does not exist")
    try:
        conn = sqlite3.connect(
            str(p), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False, factory=StorageConnection
        )
        conn.storage_name = name or f"project database {str(p)!r}"
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


def storage_error(exc: BaseException, name: str) -> AmberwatchError | None:
    """The typed error a storage failure of the file called ``name`` means, or None for any other error.

    SQLite's "database is locked" / busy -> DatabaseBusyError; SQLite's "database or disk is full" (SQLITE_FULL)
    and an OSError ENOSPC / EDQUOT -> StorageFullError, saying that the work so far is kept.
    """
    if isinstance(exc, sqlite3.OperationalError):
        message = str(exc).lower()
        if "database is locked" in message or "is busy" in message:
            return DatabaseBusyError(f"{name} is locked by another writer ({exc}): try again shortly")
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in message:
            return _full_error(name, exc)
    elif isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return _full_error(name, exc)
    return None


def _full_error(name: str, exc: BaseException) -> StorageFullError:
    return StorageFullError(
        f"{name} could not be written: no space left ({exc}). The work done so far is kept: "
        "free some disk space and run the same command again"
    )


@contextlib.contextmanager
def _typed(name: str) -> Iterator[None]:
    """Raise the typed error (``storage_error``) of a storage failure in the block, naming the file ``name``."""
    try:
        yield
    except (sqlite3.OperationalError, OSError) as exc:
        typed = storage_error(exc, name)
        if typed is None:
            raise
        raise typed from exc


def writing(path: str | os.PathLike[str], what: str = "file") -> contextlib.AbstractContextManager[None]:
    """Context of a block writing ``path`` (e.g. ``what`` = "export file"): a full disk there is a StorageFullError
    naming it (``storage_error``)."""
    return _typed(f"{what} {str(path)!r}")


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
        except (sqlite3.DatabaseError, AmberwatchError) as exc:
            conn.execute("ROLLBACK")
            if isinstance(exc, AmberwatchError):  # already typed (a full disk, a lock held too long)
                raise
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
