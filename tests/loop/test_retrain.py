"""Retrain from a DB with corrections; refusal to promote a worse model; --force."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner

from amberwatch.cli import main
from amberwatch.db import connect
from amberwatch.imagery.decode import encode_jpeg
from amberwatch.labels.store import ExampleStore
from amberwatch.loop.retrain import retrain
from amberwatch.model.registry import ModelRegistry
from tests.fixtures.training import small_config

from .conftest import add_feedback, fill_store, insert_detection, insert_scan, make_chip, make_classifier

CONFIG = small_config(epochs=4)


def _reviewed_rejections(db_path, rng, n: int = 4) -> None:
    """n rejected 'not_mining' flags (so the truth is mining) on detections whose image shows trees."""
    conn = connect(db_path)
    scan = insert_scan(conn)
    for k in range(n):
        thumb = encode_jpeg(make_chip(rng, False), quality=95)
        det = insert_detection(conn, scan, 25.0 + k * 0.001, 51.0, 25.0005 + k * 0.001, 51.0005, 0.1, thumbnail=thumb)
        add_feedback(conn, det, "not_mining", "rejected", scan_id=scan)
    conn.close()


def test_retrain_from_corrections(db_path, rng):
    correction_ids = fill_store(db_path, rng, blocks=8, per_block=3, corrections=6)
    conn = connect(db_path)
    scan = insert_scan(conn)
    for k, eid in enumerate(correction_ids):
        det = insert_detection(conn, scan, 25.0 + k * 0.001, 51.0, 25.0005 + k * 0.001, 51.0005, 0.1)
        add_feedback(conn, det, "not_mining", "accepted", example_id=eid, scan_id=scan)
    conn.close()
    _reviewed_rejections(db_path, rng, n=2)

    result = retrain(db_path, config=CONFIG, n_folds=3, seed=0)

    assert result.current_version == 0 and result.candidate_version == 1
    assert result.counts["corrections"] == 6 and result.counts["mining"] == 24 and result.counts["not_mining"] == 30
    # The bundled model never saw these examples: its own predictions are honest scores, nothing is trained for it.
    assert result.current.cv_mode == "its recorded out-of-fold scores on 0 examples, its predictions on 54 it never saw"
    assert result.current.cv["n_train_not_mining"] == 0
    assert result.candidate.reviewed["n"] == 8 and result.candidate.reviewed["out_of_fold"] == 6
    assert result.current.reviewed["n"] == 8
    assert result.promoted == (not result.reasons)
    table = result.table()
    assert "CV F1" in table and "candidate v1" in table and "current v0" in table
    with ModelRegistry.open(db_path) as reg:
        v1 = reg.get(1)
        assert v1.parent_version == 0 and v1.n_mining == 24
        assert v1.comparison["current"]["version"] == 0 and v1.comparison["candidate"]["version"] == 1
        assert len(reg.training_sha256s(1)) == 54
        assert reg.current_version() == (1 if result.promoted else 0)


def test_unchanged_training_set_is_refused_unless_forced(db_path, rng):
    from amberwatch.errors import ConflictError

    fill_store(db_path, rng, blocks=6, per_block=2)
    first = retrain(db_path, config=small_config(epochs=2), n_folds=3, seed=0, force=True)
    with pytest.raises(ConflictError, match=f"unchanged since model version {first.candidate_version}"):
        retrain(db_path, config=small_config(epochs=2), n_folds=3, seed=0)


def test_excluded_examples_stay_out(db_path, rng):
    fill_store(db_path, rng, blocks=6, per_block=2, corrections=3)
    with ExampleStore.open(db_path) as store:
        assert store.exclude(category="quarry", reason="test") == 3
    result = retrain(db_path, config=small_config(epochs=1), n_folds=3, seed=0)
    assert result.counts["corrections"] == 0 and result.counts["not_mining"] == 12


def test_current_model_is_scored_by_its_recorded_oof_and_its_predictions_on_new_examples(db_path, rng):
    fill_store(db_path, rng, blocks=6, per_block=2)
    first = retrain(db_path, config=CONFIG, n_folds=3, seed=0, force=True)
    v1_oof = first.details["oof_candidate"]
    with ExampleStore.open(db_path) as store:
        for k in range(3):
            store.add(make_chip(rng, False), "not_mining", lon=25.05 + 0.1 * k, lat=51.05, source="review")
    second = retrain(db_path, config=CONFIG, n_folds=3, seed=0, force=True)
    assert second.current_version == 1
    assert second.current.cv_mode == "its recorded out-of-fold scores on 24 examples, its predictions on 3 it never saw"
    # No model trained for the comparison: v1's own out-of-fold scores, as recorded when it was trained.
    np.testing.assert_allclose(second.details["oof_current"][:24], v1_oof, atol=1e-6)
    with ModelRegistry.open(db_path) as reg, ExampleStore.open(db_path) as store:
        v1 = reg.load(1)
        new = [store.pixels(e.id) for e in store.examples() if e.source == "review"]
    np.testing.assert_allclose(second.details["oof_current"][24:], v1.predict_proba(new), atol=1e-6)


def test_a_current_model_without_recorded_scores_has_its_recipe_retrained_on_each_fold(db_path, rng):
    fill_store(db_path, rng, blocks=6, per_block=2)
    with ExampleStore.open(db_path) as store:
        shas = [e.sha256 for e in store.examples()]
    with ModelRegistry.open(db_path) as reg:
        reg.register(make_classifier(), training_sha256s=shas, note="a file from before training_oof")
        reg.promote(1)
    same = retrain(db_path, config=small_config(epochs=1), n_folds=3, seed=0, force=True)
    assert same.current.cv_mode == "same training set as the candidate"
    fill_store(db_path, rng, blocks=6, per_block=1, corrections=3)
    with ModelRegistry.open(db_path) as reg:
        reg.promote(1)
    result = retrain(db_path, config=small_config(epochs=1), n_folds=3, seed=0)
    assert result.current.cv_mode == "its training set retrained on each fold"
    assert result.current.cv["n_train_not_mining"] == 12


@pytest.fixture
def better_current(db_path, rng):
    """A DB whose current model (v1, 'always mining') is right on every reviewed detection."""
    fill_store(db_path, rng, blocks=6, per_block=3)
    with ExampleStore.open(db_path) as store:
        shas = [e.sha256 for e in store.examples()]
    with ModelRegistry.open(db_path) as reg:
        reg.register(make_classifier(bias=10.0), training_sha256s=shas, note="always mining")
        reg.promote(1)
    _reviewed_rejections(db_path, rng, n=4)
    return db_path


def test_refuses_to_promote_a_worse_model_unless_forced(better_current):
    result = retrain(better_current, config=CONFIG, n_folds=3, seed=0)
    assert not result.promoted
    assert result.current.reviewed["accuracy"] == 1.0
    assert result.candidate.reviewed["accuracy"] < 1.0
    assert any("reviewed detections" in r for r in result.reasons)
    assert "NOT promoted v2" in result.table()
    with ModelRegistry.open(better_current) as reg:
        assert reg.current_version() == 1
        assert reg.get(2).note.startswith("refused")

    forced = retrain(better_current, config=CONFIG, n_folds=3, seed=0, force=True)
    assert forced.promoted and forced.reasons and forced.candidate_version == 3
    assert "despite" in forced.table()
    with ModelRegistry.open(better_current) as reg:
        assert reg.current_version() == 3
        assert reg.promotions()[-1]["forced"] == 1


@pytest.mark.slow
def test_retrain_cli_prints_table_and_refuses(better_current):
    res = CliRunner().invoke(
        main, ["retrain", "--db", str(better_current), "--folds", "3", "--epochs", "4", "--workers", "2"]
    )
    assert res.exit_code == 1, res.output
    assert "CV F1" in res.output and "not promoted" in res.output


def test_retrain_needs_both_labels(db_path, rng):
    from amberwatch.errors import ModelError

    with ExampleStore.open(db_path) as store:
        for b in range(4):
            store.add(make_chip(rng, True), "mining", lon=25.05 + 0.1 * b, lat=51.05)
    with pytest.raises(ModelError):
        retrain(db_path, config=replace(CONFIG, epochs=1), n_folds=3)


def test_both_models_are_compared_at_their_own_stored_thresholds(db_path, rng):
    fill_store(db_path, rng, blocks=6, per_block=2)
    with ExampleStore.open(db_path) as store:
        shas = [e.sha256 for e in store.examples()]
    current = make_classifier(bias=0.0)  # P(mining) = 0.5 everywhere
    current.threshold = 0.3
    with ModelRegistry.open(db_path) as reg:
        reg.register(current, training_sha256s=shas, metrics={"cv": {"f1": 0.5, "threshold": 0.3}})
        reg.promote(1)
    fill_store(db_path, rng, blocks=6, per_block=1, corrections=3)
    result = retrain(db_path, config=CONFIG, n_folds=3, seed=0, force=True)
    assert result.current.cv["threshold"] == 0.3  # the one stored in v1, not one chosen again on these scores
    assert result.details["threshold_current"] == 0.3
    with ModelRegistry.open(db_path) as reg:
        candidate = reg.load(result.candidate_version)
        stored = reg.get(result.candidate_version).metrics["cv"]
    assert result.candidate.cv["threshold"] == round(candidate.threshold, 4)
    # What 'models list' shows for the candidate is the CV stored in its file, which its threshold came from.
    assert stored == candidate.metadata["cv"] and stored["threshold"] == round(candidate.threshold, 4)
    table = result.table()
    assert "threshold (the model's own)" in table and "0.300" in table and "best" not in table
    assert "each at its model's stored threshold, the one scans use" in table
    assert "Candidate's own CV, stored with it: F1" in table and "block CV, 3 folds, 1 split" in table


def test_corrections_weigh_local_weight_in_a_pretrained_head_and_the_cli_default_is_the_measured_one():
    from amberwatch.errors import ModelError
    from amberwatch.loop.commands import retrain_command
    from amberwatch.loop.retrain import DEFAULT_LOCAL_WEIGHT, correction_weights

    np.testing.assert_array_equal(correction_weights(np.array([True, False, True]), 5.0), [5.0, 1.0, 5.0])
    assert correction_weights(np.array([True, False]), 1.0) is None
    assert correction_weights(np.array([False, False]), 5.0) is None
    with pytest.raises(ModelError, match="-1"):
        correction_weights(np.array([True]), -1.0)
    option = next(p for p in retrain_command.params if p.name == "local_weight")
    assert option.default == DEFAULT_LOCAL_WEIGHT


@pytest.mark.slow
def test_a_pretrained_retrain_weighs_its_corrections_and_records_the_weight(db_path, rng, tmp_path):
    from amberwatch.model.pretrained import PretrainedRecipe

    fill_store(db_path, rng, blocks=6, per_block=3, corrections=4)
    recipe = PretrainedRecipe(
        jitter_copies=0, int8=False, embedding_dims=0, border_px=0, feature_cache=str(tmp_path / "f.sqlite")
    )
    result = retrain(db_path, config=recipe, n_folds=3, seed=0, force=True, local_weight=3.0)
    assert result.counts["local_weight"] == 3.0 and result.counts["corrections"] == 4
    with ModelRegistry.open(db_path) as reg:
        assert reg.load(result.candidate_version).metadata["local_weight"] == 3.0


@pytest.mark.slow
def test_a_pretrained_retrain_registers_the_candidates_own_triage_model_unless_told_not_to(db_path, rng, tmp_path):
    from amberwatch.model.modelfile import load
    from amberwatch.model.pretrained import PretrainedRecipe
    from amberwatch.model.recipes import TRIAGE_MIN_RECALL, TRIAGE_WINDOW_CELLS

    fill_store(db_path, rng, blocks=6, per_block=3, corrections=4)
    recipe = PretrainedRecipe(
        jitter_copies=0, int8=False, embedding_dims=0, border_px=0, feature_cache=str(tmp_path / "f.sqlite")
    )
    result = retrain(db_path, config=recipe, n_folds=3, seed=0, force=True)
    with ModelRegistry.open(db_path) as reg:
        model, triage = reg.load(result.candidate_version), reg.triage_model(result.candidate_version)
    clf = load(triage.path)
    # The same examples at half resolution, the same head code, its threshold chosen for recall on block CV.
    assert triage.own and clf.metadata["role"] == "triage" and clf.metadata["zoom_offset"] == -1
    assert clf.resolution_m_per_px == pytest.approx(2 * model.resolution_m_per_px)
    assert clf.recipe.window_cells == TRIAGE_WINDOW_CELLS and clf.metadata["counts"] == model.metadata["counts"]
    cv = clf.metadata["cv"]
    assert cv["min_recall_target"] == TRIAGE_MIN_RECALL and cv["recall"] >= TRIAGE_MIN_RECALL
    assert cv["grouping"] == "0.1-degree block" and triage.threshold == pytest.approx(clf.threshold)
    assert f"Triage model (scan --triage-zoom): its own, threshold {clf.threshold:.4f}" in result.table()

    without = retrain(db_path, config=recipe, n_folds=3, seed=0, force=True, triage=False)
    with ModelRegistry.open(db_path) as reg:
        assert not reg.triage_model(without.candidate_version).own  # its scans triage with the bundled model
    assert "none of its own (--no-triage)" in without.table()


def test_retrain_no_triage_option_reaches_retrain():
    from amberwatch.loop.commands import retrain_command

    option = next(p for p in retrain_command.params if p.name == "triage")
    assert option.default is True and "--no-triage" in option.secondary_opts
