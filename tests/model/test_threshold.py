"""One threshold per model: evaluate's CV gives the threshold train stores; every F1 says where it comes from."""

from __future__ import annotations

import pytest

from amberwatch.model.dataset import load_folder
from amberwatch.model.evaluate import evaluate_cv
from amberwatch.model.metrics import cv_basis, f1_statement
from amberwatch.model.train import train_with_cv
from tests.fixtures.training import small_config


@pytest.mark.slow
def test_evaluate_cv_reports_the_threshold_and_f1_train_stores(small_folder, tmp_path):
    data = load_folder(small_folder)
    config = small_config(epochs=1)
    clf, _ = train_with_cv(data, config, seed=0, n_folds=2, split_seeds=2)
    result = evaluate_cv(data, config, tmp_path / "ev", n_folds=2, seed=0, split_seeds=2, data_name="folder")
    assert result["threshold"] == pytest.approx(clf.threshold, abs=1e-4)
    for key in ("f1", "precision", "recall", "confusion_matrix"):
        assert result[key] == clf.metadata["cv"][key]
    assert cv_basis(result) == "block CV, 2 folds x 2 split seeds, 16 examples of folder"


def test_an_f1_statement_names_its_threshold_and_data():
    cv = {"f1": 0.8648, "precision": 0.9508, "recall": 0.793, "threshold": 0.7415, "folds": 5}
    cv.update({"split_seeds": [0, 1, 2, 3, 4], "scored_examples": 881, "data": "'texty-amber'"})
    assert f1_statement(cv, cv_basis(cv)) == (
        "F1 0.865 (precision 0.951, recall 0.793) at the model's threshold 0.742 "
        "(block CV, 5 folds x 5 split seeds, 881 examples of 'texty-amber')"
    )
    one = {"folds": 3, "split_seeds": [0], "n_positive": 4, "n_negative": 6}
    assert cv_basis(one) == "block CV, 3 folds, 1 split, 10 examples"
