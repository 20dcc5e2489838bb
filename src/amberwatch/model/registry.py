"""Model versions in the project DB (component ``models``) with their files beside the DB.

Version 0 is the bundled model shipped in the package and is always listed; versions 1, 2, ... are
made by ``amberwatch train``, ``retrain`` or ``models add FILE`` and stored as ``<db stem>-models/v<N>.pt``.
A version may carry its own triage model (``scan --triage-zoom``; ``retrain`` trains one) in ``v<N>-triage.pt``,
checked by its sha256 like the model's; without one (and for version 0) the bundled triage model goes with it.
The current version is the one most recently promoted (0 when none has been). A scan without ``--model``
uses it: ``scan.engine.resolve_model`` loads ``ModelRegistry.current_version`` (``current_model`` is the same for
library callers).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from amberwatch.db import utc_now_iso
from amberwatch.errors import ConflictError, InvalidInputError, ModelError, NotFoundError
from amberwatch.options import MAX_SQLITE_INT
from amberwatch.project import Component, Project, migrate_component, models_dir

if TYPE_CHECKING:  # model files load torch: only when one is read
    from amberwatch.model.modelfile import Model

COMPONENT = "models"
BUNDLED_VERSION = 0

MIGRATIONS: list[str] = [
    """
    CREATE TABLE model_versions (
        version INTEGER PRIMARY KEY,        -- 1, 2, ...; 0 is the bundled model and has no row
        file_name TEXT NOT NULL,            -- inside <db stem>-models/
        file_sha256 TEXT NOT NULL,
        parent_version INTEGER,             -- the current version when this one was trained
        training_fingerprint TEXT,          -- ExampleStore.fingerprint of the training examples
        -- sorted example sha256s: the training set, for later comparisons
        training_sha256_json TEXT NOT NULL DEFAULT '[]',
        n_mining INTEGER,
        n_not_mining INTEGER,
        seed INTEGER,
        metrics_json TEXT NOT NULL DEFAULT '{}',     -- measured at training time (CV, reviewed detections)
        comparison_json TEXT NOT NULL DEFAULT '{}',  -- side-by-side with the parent version
        note TEXT,
        created_at TEXT NOT NULL
    );
    CREATE TABLE model_promotions (
        id INTEGER PRIMARY KEY,
        version INTEGER NOT NULL,           -- 0 = back to the bundled model
        forced INTEGER NOT NULL DEFAULT 0,
        reason TEXT,
        promoted_at TEXT NOT NULL
    );
    """,
    """
    -- the triage model trained with a version (scan --triage-zoom), inside <db stem>-models/ (NULL: the bundled one)
    ALTER TABLE model_versions ADD COLUMN triage_file_name TEXT;
    ALTER TABLE model_versions ADD COLUMN triage_sha256 TEXT;
    ALTER TABLE model_versions ADD COLUMN triage_metrics_json TEXT NOT NULL DEFAULT '{}';  -- its threshold and CV
    """,
]


SCHEMA = Component(COMPONENT, MIGRATIONS)


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create or upgrade the model registry tables on a bare connection (a Project: ``migrate(SCHEMA)``)."""
    migrate_component(conn, SCHEMA)


def parse_version(value: str | int) -> int:
    """A version number from '3', 'v3' or 3; InvalidInputError naming the value otherwise."""
    text = str(value).strip()
    digits = text[1:] if text[:1] in ("v", "V") else text
    if not (digits.isascii() and digits.isdigit()):
        raise InvalidInputError(f"model version {value!r} is not a number like 2 or v2")
    if len(digits.lstrip("0")) > len(str(MAX_SQLITE_INT)) or int(digits) > MAX_SQLITE_INT:
        raise InvalidInputError(f"model version {value!r} is larger than any version can be ({MAX_SQLITE_INT})")
    return int(digits)


@dataclass(frozen=True)
class ModelVersion:
    """One registered model version (0 = bundled) with what is known about it."""

    version: int
    path: Path | None  # None only when the bundled model file is missing
    created_at: str | None
    parent_version: int | None
    training_fingerprint: str | None
    n_mining: int | None
    n_not_mining: int | None
    seed: int | None
    metrics: dict = field(default_factory=dict)
    comparison: dict = field(default_factory=dict)
    note: str | None = None
    is_current: bool = False
    file_sha256: str | None = None
    triage: TriageModel | None = None  # the triage model that goes with it (None: the bundled one is missing)

    def as_dict(self) -> dict:
        """Plain JSON-able dict for CLI output and the web app."""
        return {
            "version": self.version,
            "path": str(self.path) if self.path else None,
            "created_at": self.created_at,
            "parent_version": self.parent_version,
            "training_fingerprint": self.training_fingerprint,
            "n_mining": self.n_mining,
            "n_not_mining": self.n_not_mining,
            "seed": self.seed,
            "metrics": self.metrics,
            "comparison": self.comparison,
            "note": self.note,
            "current": self.is_current,
            "file_sha256": self.file_sha256,
            "triage": self.triage.as_dict() if self.triage else None,
        }


@dataclass(frozen=True)
class TriageModel:
    """The triage model of a version: its file, whether the version has its own (else the bundled one), its
    threshold and the block-CV metrics it was chosen on."""

    path: Path
    own: bool
    threshold: float | None
    cv: dict = field(default_factory=dict)
    file_sha256: str | None = None  # a version's own file, checked before a scan uses it

    def as_dict(self) -> dict:
        """Plain JSON-able dict for CLI output."""
        return {
            "path": str(self.path),
            "own": self.own,
            "threshold": self.threshold,
            "cv": self.cv,
            "file_sha256": self.file_sha256,
        }

    def describe(self) -> str:
        """One line: whose triage model it is and its threshold."""
        whose = f"own ({self.path.name})" if self.own else "bundled"
        recall = self.cv.get("recall")
        at = f", block-CV recall {recall:.2f}" if recall is not None else ""
        return f"{whose}, threshold {self.threshold:.4f}{at}" if self.threshold is not None else whose


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class ModelRegistry:
    """Register, list, load and promote model versions of one project DB."""

    def __init__(self, conn: sqlite3.Connection, db_path: str | os.PathLike[str]) -> None:
        """Use an open connection to the project DB at db_path (its ``models`` component already migrated)."""
        self.conn = conn
        self.db_path = Path(db_path)
        self.dir = models_dir(self.db_path)

    @classmethod
    def in_project(cls, project: Project) -> ModelRegistry:
        """The registry of a project, on its connection (``project.store(ModelRegistry)`` makes it once)."""
        project.migrate(SCHEMA)
        return cls(project.conn, project.path)

    @classmethod
    def open(cls, db_path: str | os.PathLike[str]) -> ModelRegistry:
        """The registry of a project opened on db_path for this registry alone (closing it closes the project)."""
        return Project.open(db_path).store(cls)

    def close(self) -> None:
        """Close the DB connection (of the project it came from, too)."""
        self.conn.close()

    def __enter__(self) -> ModelRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------------------------

    def current_version(self) -> int:
        """The version scans use by default: the last promoted one, else 0 (bundled)."""
        row = self.conn.execute("SELECT version FROM model_promotions ORDER BY id DESC LIMIT 1").fetchone()
        return int(row[0]) if row else BUNDLED_VERSION

    def versions(self) -> list[ModelVersion]:
        """All versions, bundled version 0 first."""
        current = self.current_version()
        rows = self.conn.execute("SELECT * FROM model_versions ORDER BY version").fetchall()
        return [self._bundled(current)] + [self._from_row(r, current) for r in rows]

    def get(self, version: int | str) -> ModelVersion:
        """One version; NotFoundError naming it when it is not registered."""
        v = parse_version(version)
        current = self.current_version()
        if v == BUNDLED_VERSION:
            return self._bundled(current)
        row = self.conn.execute("SELECT * FROM model_versions WHERE version = ?", (v,)).fetchone()
        if row is None:
            known = ", ".join(str(m.version) for m in self.versions())
            raise NotFoundError(f"model version {v} is not registered in {str(self.db_path)!r} (known: {known})")
        return self._from_row(row, current)

    def training_sha256s(self, version: int | str) -> list[str] | None:
        """Sorted sha256s of the examples a version was trained on (None when unknown, e.g. bundled)."""
        v = parse_version(version)
        if v == BUNDLED_VERSION:
            return None
        row = self.conn.execute("SELECT training_sha256_json FROM model_versions WHERE version = ?", (v,)).fetchone()
        if row is None:
            raise NotFoundError(f"model version {v} is not registered in {str(self.db_path)!r}")
        shas = json.loads(row[0] or "[]")
        return list(shas) if shas else None

    def load(self, version: int | str | None = None) -> Model:
        """The Classifier of a version (None: the current one), its ``version`` set to the registry number."""
        from amberwatch.model.modelfile import load as load_file  # torch loads only when a model file is read

        info = self.get(self.current_version() if version is None else version)
        if info.path is None:
            raise ModelError(f"model version {info.version}: the bundled model file is missing from the package")
        if info.version != BUNDLED_VERSION and not info.path.exists():
            raise ModelError(f"model version {info.version}: file {str(info.path)!r} is missing")
        clf = load_file(info.path, info.file_sha256)  # the bundled model has no row: its own digest only
        clf.version = str(info.version)
        return clf

    # -- writing ---------------------------------------------------------------------------------

    def register(
        self,
        classifier,
        *,
        training_sha256s: list[str] | None = None,
        training_fingerprint: str | None = None,
        n_mining: int | None = None,
        n_not_mining: int | None = None,
        seed: int | None = None,
        metrics: dict | None = None,
        comparison: dict | None = None,
        parent_version: int | None = None,
        note: str | None = None,
        triage=None,
    ) -> ModelVersion:
        """Save a Classifier as the next version's file and record it (not promoted); ``triage``: the triage model
        trained with it, saved beside it as ``v<N>-triage.pt``."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conn.execute("BEGIN IMMEDIATE")
        written: list[Path] = []
        try:
            row = self.conn.execute("SELECT COALESCE(MAX(version), 0) FROM model_versions").fetchone()
            version = int(row[0]) + 1
            path = self.dir / f"v{version}.pt"
            classifier.version = str(version)
            classifier.metadata["registry_version"] = version
            written.append(path)
            classifier.save(path)
            self.conn.execute(
                "INSERT INTO model_versions (version, file_name, file_sha256, parent_version, training_fingerprint,"
                " training_sha256_json, n_mining, n_not_mining, seed, metrics_json, comparison_json, note, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    version,
                    path.name,
                    _sha256_file(path),
                    parent_version,
                    training_fingerprint,
                    json.dumps(sorted(training_sha256s or [])),
                    n_mining,
                    n_not_mining,
                    seed,
                    json.dumps(metrics or {}, sort_keys=True),
                    json.dumps(comparison or {}, sort_keys=True),
                    note,
                    utc_now_iso(),
                ),
            )
            self._save_triage(triage, version, written)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            for written_path in written:
                written_path.unlink(missing_ok=True)
            raise
        return self.get(version)

    def _save_triage(self, triage, version: int, written: list[Path]) -> None:
        """Write a version's triage model beside it (version label ``<N>-triage``, so its scans are told apart) and
        record its file, sha256, threshold and CV in the version's row (inside register's transaction)."""
        if triage is None:
            return
        path = self.dir / f"v{version}-triage.pt"
        triage.version = f"{version}-triage"
        triage.metadata.update({"registry_version": version, "role": "triage"})
        written.append(path)
        triage.save(path)
        metrics = {"threshold": float(triage.threshold), "cv": dict(triage.metadata.get("cv") or {})}
        self.conn.execute(
            "UPDATE model_versions SET triage_file_name = ?, triage_sha256 = ?, triage_metrics_json = ?"
            " WHERE version = ?",
            (path.name, _sha256_file(path), json.dumps(metrics, sort_keys=True), version),
        )

    def triage_model(self, version: int | str | None = None) -> TriageModel:
        """The triage model that goes with a version (None: the current one): its own, its file checked against
        the sha256 registered with it, else the bundled one; ModelError when that file is missing or changed."""
        info = self.get(self.current_version() if version is None else version)
        triage = info.triage
        if triage is None or not triage.path.exists():
            where = str(triage.path) if triage else "the package"
            raise ModelError(f"model version {info.version}: its triage model file is missing from {where!r}")
        if triage.own and _sha256_file(triage.path) != triage.file_sha256:
            raise ModelError(
                f"model version {info.version}: triage model file {str(triage.path)!r} differs from the one "
                f"registered with it (sha256 {triage.file_sha256})"
            )
        return triage

    def add(self, classifier, *, note: str) -> ModelVersion:
        """Register a trained model (from ``train`` or a model file) with what its metadata records (not promoted)."""
        metadata = classifier.metadata
        counts = metadata.get("counts") or {}
        return self.register(
            classifier,
            training_sha256s=sorted(classifier.training_sha256s or []),
            training_fingerprint=metadata.get("fingerprint"),
            n_mining=counts.get("mining"),
            n_not_mining=counts.get("not_mining"),
            seed=metadata.get("seed"),
            metrics={"cv": metadata.get("cv") or {}},
            parent_version=None,
            note=note,
        )

    def promote(self, version: int | str, *, forced: bool = False, reason: str | None = None) -> ModelVersion:
        """Make a registered version current; ConflictError if it is already current."""
        info = self.get(version)
        if info.is_current:
            raise ConflictError(f"model version {info.version} is already the current version")
        if info.version != BUNDLED_VERSION and (info.path is None or not info.path.exists()):
            raise ModelError(f"model version {info.version}: file {str(info.path)!r} is missing; cannot promote")
        self.conn.execute(
            "INSERT INTO model_promotions (version, forced, reason, promoted_at) VALUES (?, ?, ?, ?)",
            (info.version, int(forced), reason, utc_now_iso()),
        )
        return self.get(info.version)

    def set_comparison(self, version: int | str, comparison: dict) -> None:
        """Replace the stored side-by-side comparison of a registered version."""
        v = parse_version(version)
        self.conn.execute(
            "UPDATE model_versions SET comparison_json = ? WHERE version = ?",
            (json.dumps(comparison, sort_keys=True), v),
        )

    def promotions(self) -> list[dict]:
        """Promotion history, oldest first."""
        rows = self.conn.execute("SELECT version, forced, reason, promoted_at FROM model_promotions ORDER BY id")
        return [dict(r) for r in rows]

    # -- helpers ---------------------------------------------------------------------------------

    def _bundled(self, current: int) -> ModelVersion:
        from amberwatch.model.modelfile import BUNDLED_PATH

        path: Path | None = BUNDLED_PATH if BUNDLED_PATH.exists() else None
        metadata = _file_metadata(path)
        counts = metadata.get("counts") or {}
        return ModelVersion(
            version=BUNDLED_VERSION,
            path=path,
            created_at=metadata.get("created_at"),
            parent_version=None,
            training_fingerprint=metadata.get("fingerprint"),
            n_mining=counts.get("mining"),
            n_not_mining=counts.get("not_mining"),
            seed=metadata.get("seed"),
            metrics=_bundled_metrics(metadata),
            note="bundled with amberwatch" if path else "bundled model file missing",
            is_current=current == BUNDLED_VERSION,
            triage=_bundled_triage(),
        )

    def _from_row(self, row: sqlite3.Row, current: int) -> ModelVersion:
        return ModelVersion(
            version=int(row["version"]),
            path=self.dir / row["file_name"],
            created_at=row["created_at"],
            parent_version=row["parent_version"],
            training_fingerprint=row["training_fingerprint"],
            n_mining=row["n_mining"],
            n_not_mining=row["n_not_mining"],
            seed=row["seed"],
            metrics=json.loads(row["metrics_json"] or "{}"),
            comparison=json.loads(row["comparison_json"] or "{}"),
            note=row["note"],
            is_current=int(row["version"]) == current,
            file_sha256=row["file_sha256"],
            triage=self._row_triage(row),
        )

    def _row_triage(self, row: sqlite3.Row) -> TriageModel | None:
        """A registered version's own triage model, else the bundled one."""
        if not row["triage_file_name"]:
            return _bundled_triage()
        metrics = json.loads(row["triage_metrics_json"] or "{}")
        return TriageModel(
            self.dir / row["triage_file_name"],
            True,
            metrics.get("threshold"),
            metrics.get("cv") or {},
            row["triage_sha256"],
        )


def _file_metadata(path: Path | None) -> dict:
    """The metadata of a bundled model file ({} when it is missing or unreadable), read once per file version."""
    if path is None or not path.exists():
        return {}
    stat = path.stat()
    return dict(_read_metadata(str(path), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=8)
def _read_metadata(path: str, _mtime_ns: int, _size: int) -> dict:
    from amberwatch.model.modelfile import load as load_file

    try:
        return dict(load_file(path).metadata)
    except ModelError:
        return {}


def _bundled_triage() -> TriageModel | None:
    """The bundled triage model (None when its file is missing from the package)."""
    from amberwatch.model.modelfile import BUNDLED_TRIAGE_PATH

    metadata = _file_metadata(BUNDLED_TRIAGE_PATH)
    if not metadata:
        return None
    return TriageModel(BUNDLED_TRIAGE_PATH, False, metadata.get("threshold"), dict(metadata.get("cv") or {}))


def _bundled_metrics(metadata: dict) -> dict:
    """Whatever CV metrics the bundled model's metadata carries, under a stable key."""
    for key in ("cv", "cv_metrics", "metrics"):
        if isinstance(metadata.get(key), dict):
            return {"cv": metadata[key]}
    return {}


def current_model(db: Project | str | os.PathLike[str]) -> Model:
    """The current Classifier of a project (the promoted version, else the bundled model), as scans resolve it."""
    with Project.using(db) as project:
        return project.store(ModelRegistry).load(None)


def load_version(db: Project | str | os.PathLike[str], version: int | str | None = None) -> Model:
    """The Classifier of one registered version (None: current) of a project."""
    with Project.using(db) as project:
        return project.store(ModelRegistry).load(version)


def load_model_arg(db_path: str | os.PathLike[str], value: str | None) -> Model:
    """The model a --model option names: a model file, else a registered version ('3', 'v3') of the project DB;
    None: the bundled model."""
    from amberwatch.model.modelfile import load as load_file

    if value is None or Path(value).exists() or not names_a_version(value):
        return load_file(value)
    if not Path(db_path).is_file():
        raise NotFoundError(f"--model {value!r}: no such file, and no project database {str(db_path)!r} to look up")
    return load_version(db_path, value)


def names_a_version(value: str) -> bool:
    """Whether a --model value reads as a version number ('3', 'v3') rather than a file name."""
    try:
        parse_version(value)
    except InvalidInputError:
        return False
    return True
