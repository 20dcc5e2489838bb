"""The project handle: one connection per command, each component migrated once, the files beside the DB."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from amberwatch.cli import main
from amberwatch.errors import DatabaseError
from amberwatch.labels.store import SCHEMA as LABELS_SCHEMA
from amberwatch.labels.store import ExampleStore
from amberwatch.loop.retrain import retrain
from amberwatch.model.registry import ModelRegistry
from amberwatch.project import Project, feature_cache_path, models_dir, scan_lock_file, tile_cache_path
from amberwatch.results.area_store import SCHEMA as AREA_SCHEMA
from amberwatch.review.schema import SCHEMA as WEB_SCHEMA
from tests.fixtures.training import small_config
from tests.loop.conftest import fill_store
from tests.scan.conftest import put_image_tiles, texty_image, tile_origin, tiles_bbox, write_aoi


@pytest.fixture
def opens(monkeypatch):
    """Counts sqlite3.connect calls on a file: ``opens(path)`` -> how many so far (the real connect runs)."""
    opened: list[str] = []
    real = sqlite3.connect

    def counting(database, *args, **kwargs):
        opened.append(str(database))
        return real(database, *args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", counting)
    return lambda path: sum(1 for name in opened if Path(name).resolve() == Path(path).resolve())


def _versions(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT component, MAX(version) FROM schema_migrations GROUP BY component").fetchall()
    return dict(rows)


def test_a_project_opens_its_db_once_and_migrates_each_component_once(tmp_path, opens):
    db = tmp_path / "p.db"
    with Project.open(db) as project:
        assert not db.exists()  # nothing asked for the DB yet: no file made
        project.migrate(WEB_SCHEMA, AREA_SCHEMA)  # web requires results and labels; area requires results
        project.migrate(LABELS_SCHEMA, WEB_SCHEMA)
        registry = project.store(ModelRegistry)
        assert project.store(ModelRegistry) is registry and registry.conn is project.conn
        assert project.store(ExampleStore).conn is project.conn
        assert registry.current_version() == 0
    assert opens(db) == 1
    assert set(_versions(db)) == {"results", "labels", "web", "area", "models"}


def test_a_project_that_must_exist_names_the_missing_file(tmp_path):
    with pytest.raises(DatabaseError, match=r"project database '.*missing\.db' does not exist"):
        Project.open(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()


def test_the_files_beside_the_project_db(tmp_path):
    db = tmp_path / "survey.db"
    project = Project.open(db)
    assert project.tile_cache_path() == tile_cache_path(db) == tmp_path / "survey-tiles.sqlite"
    assert project.feature_cache_path() == feature_cache_path(db) == tmp_path / "survey-features.sqlite"
    assert project.models_dir() == models_dir(db) == tmp_path / "survey-models"
    assert project.scan_lock_file("ab12") == scan_lock_file(db, "ab12") == tmp_path.resolve() / "survey-scan-ab12.lock"
    (tmp_path / "survey-tiles.mbtiles").write_bytes(b"")  # an older project's cache is used where it is
    assert project.tile_cache_path() == tmp_path / "survey-tiles.mbtiles"
    (tmp_path / "survey-tiles.sqlite").write_bytes(b"")
    assert project.tile_cache_path() == tmp_path / "survey-tiles.sqlite"


def test_scan_opens_the_project_db_once(tile_server, tmp_path, opens):
    x0, y0 = tile_origin((40, 0))
    put_image_tiles(tile_server, texty_image("positive1"), x0, y0, 2, 2)
    aoi = write_aoi(tmp_path / "aoi.geojson", tiles_bbox(x0, y0, 2, 2))
    db = tmp_path / "amberwatch.db"
    args = ["scan", "--aoi", str(aoi), "--imagery", tile_server.url, "--db", str(db), "--workers", "1"]
    result = CliRunner().invoke(main, [*args, "--fp32", "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Scan 1 finished: 4 tiles" in result.output
    assert opens(db) == 1  # the registry (current model), the scan and its outcome share one connection


def test_train_from_the_store_opens_the_project_db_once(tmp_path, opens):
    db = tmp_path / "p.db"
    fill_store(db, np.random.default_rng(0), blocks=4, per_block=2)
    before = opens(db)
    args = ["train", "--db", str(db), "--recipe", "cnn", "--epochs", "1", "--members", "1", "--folds", "0"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "registered model version 1" in result.output
    assert opens(db) - before == 1  # the example store and the registry share one connection


def test_retrain_opens_the_project_db_once(tmp_path, opens):
    db = tmp_path / "p.db"
    fill_store(db, np.random.default_rng(0), blocks=6, per_block=2)
    before = opens(db)
    result = retrain(db, config=small_config(epochs=2), n_folds=3, seed=0, force=True)
    assert result.candidate_version == 1
    assert opens(db) - before == 1  # examples, registry and reviewed detections on one connection
