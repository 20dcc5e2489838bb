"""The project handle: the project DB opened once, each component migrated once, and the files beside it.

Like datasette's ``Datasette`` holding its databases: a command opens one ``Project`` and passes it down; the stores
it hands out (``project.store(ModelRegistry)``) share its one connection. Each owner of tables declares its
migrations as a ``Component``; ``Project.migrate`` applies a component (after the ones it requires) once per handle.
The paths of the files beside the project DB (tile cache, feature cache, models folder, scan locks) are derived
here and nowhere else, one function each.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from amberwatch.db import BUSY_TIMEOUT_S, connect, existing_db_path, migrate, resolve_db_path

TILE_CACHE_SUFFIX = "-tiles.sqlite"
LEGACY_TILE_CACHE_SUFFIX = "-tiles.mbtiles"  # its older name: the same SQLite cache, never an MBTiles file
FEATURE_CACHE_SUFFIX = "-features.sqlite"
MODELS_DIR_SUFFIX = "-models"


@dataclass(frozen=True)
class Component:
    """A migration component: its name in ``schema_migrations``, its scripts (``scripts[i]`` is version i + 1) and
    the components whose tables its own refer to (migrated before it)."""

    name: str
    scripts: Sequence[str] = field(repr=False)
    requires: tuple[Component, ...] = ()


def migrate_component(conn: sqlite3.Connection, component: Component) -> None:
    """Apply a component's migrations not yet applied on a bare connection, the components it requires first."""
    for needed in component.requires:
        migrate_component(conn, needed)
    migrate(conn, component.name, component.scripts)


def tile_cache_path(db_path: str | os.PathLike[str]) -> Path:
    """The tile cache beside a project DB: ``<db stem>-tiles.sqlite`` (or an older project's ``-tiles.mbtiles``)."""
    p = Path(db_path)
    return existing_cache_name(p.with_name(f"{p.stem}{TILE_CACHE_SUFFIX}"))


def existing_cache_name(path: Path) -> Path:
    """``path``, or the ``-tiles.mbtiles`` file an older amberwatch made in its place when only that exists.

    The old file is used where it is, never renamed: scans record their cache's path, and a rename under a
    process that has it open would split its write-ahead log.
    """
    name = path.name
    if not name.endswith(TILE_CACHE_SUFFIX) or path.exists():
        return path
    legacy = path.with_name(name.removesuffix(TILE_CACHE_SUFFIX) + LEGACY_TILE_CACHE_SUFFIX)
    return legacy if legacy.exists() else path


def feature_cache_path(db_path: str | os.PathLike[str]) -> Path:
    """The feature cache beside a project DB: ``<db stem>-features.sqlite``."""
    p = Path(db_path)
    return p.with_name(p.stem + FEATURE_CACHE_SUFFIX)


def models_dir(db_path: str | os.PathLike[str]) -> Path:
    """The folder of model files beside a project DB: ``<db stem>-models``."""
    p = Path(db_path)
    return p.with_name(f"{p.stem}{MODELS_DIR_SUFFIX}")


def scan_lock_file(db_path: str | os.PathLike[str], key_hex: str) -> Path:
    """The lock file of one scan (``key_hex``: a digest of its identity) beside the project DB."""
    db = Path(db_path).resolve()
    return db.with_name(f"{db.stem}-scan-{key_hex}.lock")


class ProjectStore(Protocol):
    """A store the project hands out: made on the project's connection (migrating its component)."""

    @classmethod
    def in_project(cls, project: Project) -> ProjectStore: ...


S = TypeVar("S", bound=ProjectStore)


class Project:
    """One project DB, opened once: its connection, its components migrated once each, its stores and sibling paths.

    The connection is made when first needed (a command that fails before touching the DB creates no file).
    """

    def __init__(self, path: Path, *, create: bool = True, name: str | None = None) -> None:
        """A handle on the project DB at ``path`` (``Project.open`` makes one); ``create``: make the file if missing."""
        self.path = path
        self._create = create
        self._name = name
        self._conn: sqlite3.Connection | None = None
        self._migrated: set[str] = set()
        self._stores: dict[type, object] = {}

    @classmethod
    def open(cls, db: str | os.PathLike[str] | None = None, *, create: bool = True, name: str | None = None) -> Project:
        """The project DB ``db`` (else $AMBERWATCH_DB, else ./amberwatch.db); DatabaseError when it is missing and
        ``create`` is false. ``name`` is how storage errors call the file (see ``db.connect``)."""
        path = existing_db_path(db) if not create else resolve_db_path(db)
        return cls(path, create=create, name=name)

    @property
    def conn(self) -> sqlite3.Connection:
        """The project's one connection (opened on first use; the stores handed out share it)."""
        if self._conn is None:
            self._conn = connect(self.path, create=self._create, name=self._name)
        return self._conn

    @classmethod
    @contextlib.contextmanager
    def using(cls, db: Project | str | os.PathLike[str] | None, *, create: bool = True) -> Iterator[Project]:
        """For the block: ``db`` itself when it is a Project (left open), else a Project opened on it (closed after)."""
        if isinstance(db, Project):
            yield db
            return
        with cls.open(db, create=create) as project:
            yield project

    def migrate(self, *components: Component) -> None:
        """Apply each component's migrations (the ones it requires first), each component once per handle."""
        for component in components:
            if component.name in self._migrated:
                continue
            self.migrate(*component.requires)
            migrate(self.conn, component.name, component.scripts)
            self._migrated.add(component.name)

    def store(self, kind: type[S]) -> S:
        """The project's store of a kind (e.g. ``ModelRegistry``), made once on the project's connection."""
        if kind not in self._stores:
            self._stores[kind] = kind.in_project(self)
        return self._stores[kind]  # type: ignore[return-value]

    def connection(self, *, busy_timeout_s: float = BUSY_TIMEOUT_S, name: str | None = None) -> sqlite3.Connection:
        """Another connection to the project DB, for a thread or request that cannot share the handle's (not
        migrated again: migrate through the handle first)."""
        return connect(self.path, create=False, busy_timeout_s=busy_timeout_s, name=name or self._name)

    def tile_cache_path(self) -> Path:
        """This project's tile cache file (``tile_cache_path``)."""
        return tile_cache_path(self.path)

    def feature_cache_path(self) -> Path:
        """This project's feature cache file (``feature_cache_path``)."""
        return feature_cache_path(self.path)

    def models_dir(self) -> Path:
        """This project's folder of model files (``models_dir``)."""
        return models_dir(self.path)

    def scan_lock_file(self, key_hex: str) -> Path:
        """The lock file of one scan of this project (``scan_lock_file``)."""
        return scan_lock_file(self.path, key_hex)

    def close(self) -> None:
        """Close the connection, if it was opened (the stores handed out share it)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
