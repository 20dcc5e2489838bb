"""train/evaluate read the example store (--db): same fingerprint as the folder, CV report files written."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import amberwatch.model as model
from amberwatch.cli import main
from amberwatch.labels.importer import import_folder
from amberwatch.labels.store import ExampleStore
from amberwatch.model.dataset import load_folder, load_store


@pytest.fixture(scope="module")
def db(small_folder, tmp_path_factory):
    path = tmp_path_factory.mktemp("db") / "project.db"
    store = ExampleStore.open(path)
    import_folder(store, small_folder)
    store.close()
    return path


def test_store_and_folder_agree(db, small_folder):
    from_store, from_folder = load_store(db), load_folder(small_folder)
    assert from_store.fingerprint == from_folder.fingerprint
    assert sorted(from_store.groups) == sorted(from_folder.groups)


@pytest.mark.slow
def test_train_and_evaluate_from_db(db, tmp_path):
    out = tmp_path / "m.pt"
    runner = CliRunner()
    result = runner.invoke(
        main, ["train", "--db", str(db), "--out", str(out), "--folds", "2", "--epochs", "1", "--members", "1"]
    )
    assert result.exit_code == 0, result.output
    clf = model.load(out)
    assert clf.metadata["fingerprint"] == load_store(db).fingerprint
    assert clf.metadata["cv"]["folds"] == 2 and clf.version != "0"
    report = tmp_path / "report"
    result = runner.invoke(
        main, ["evaluate", "--db", str(db), "--folds", "2", "--epochs", "1", "--out", str(report), "--json"]
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["n_positive"] == 8 and set(metrics["confusion_matrix"]) == {"tp", "fp", "fn", "tn"}
    for name in ("pr_curve.png", "worst_errors.png", "metrics.json", "oof_predictions.json"):
        assert (report / name).stat().st_size > 0


def test_train_with_missing_db_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(main, ["train", "--db", str(tmp_path / "nope.db")])
    assert result.exit_code == 1 and "nope.db" in result.stderr
