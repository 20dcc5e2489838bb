"""Training core: reproducible with a fixed seed, block-grouped folds, threshold choice."""

from __future__ import annotations

import numpy as np
import pytest

from amberwatch.errors import ModelError
from amberwatch.model.dataset import ChipSet, load_folder, texty_block_key
from amberwatch.model.metrics import (
    binary_metrics,
    choose_threshold,
    field_recall_threshold,
    field_scores,
    recall_threshold,
)
from amberwatch.model.train import block_folds, fit, fit_network, train_with_cv
from tests.fixtures.training import small_config


@pytest.fixture(scope="module")
def data(small_folder) -> ChipSet:
    return load_folder(small_folder)


def test_training_is_reproducible_with_a_fixed_seed(data):
    config = small_config()
    a, b = fit(data, config, seed=3), fit(data, config, seed=3)
    c = fit(data, config, seed=4)
    probs = [m.predict_proba(data.chips[:6]) for m in (a, b, c)]
    np.testing.assert_array_equal(probs[0], probs[1])
    assert not np.array_equal(probs[0], probs[2])


def test_pit_pasting_trains_reproducibly(data):
    """Pit pasting runs and keeps training deterministic for a seed."""
    config = small_config(paste_p=0.3)
    a, b = fit(data, config, seed=5), fit(data, config, seed=5)
    pa, pb = a.predict_proba(data.chips[:6]), b.predict_proba(data.chips[:6])
    np.testing.assert_array_equal(pa, pb)
    assert np.all((pa > 0) & (pa < 1))


def test_soft_targets_replace_the_labels_and_the_labels_are_the_default(data):
    """fit_network's targets: the labels as floats train exactly what no targets do; other targets train another net."""
    config = small_config(paste_p=0.3)
    plain = fit_network(data, config, seed=5)
    same = fit_network(data, config, seed=5, targets=data.labels.astype(np.float32))
    soft = fit_network(data, config, seed=5, targets=np.full(len(data), 0.5, np.float32))
    assert all(np.array_equal(plain[k].numpy(), same[k].numpy()) for k in plain)
    assert not all(np.array_equal(plain[k].numpy(), soft[k].numpy()) for k in plain)


def test_train_with_cv_fills_metadata(data, tmp_path):
    clf, extra = train_with_cv(data, small_config(epochs=1), seed=0, n_folds=2)
    meta = clf.metadata
    assert meta["fingerprint"] == data.fingerprint and len(meta["fingerprint"]) == 64
    assert meta["counts"] == {"mining": 8, "not_mining": 8, "groups": len(set(data.groups))}
    assert set(meta["cv"]) >= {"precision", "recall", "f1", "average_precision", "confusion_matrix"}
    assert meta["threshold"] == clf.threshold and meta["seed"] == 0 and meta["input_px"] == 64
    assert extra["oof"].shape == (16,)
    clf.save(tmp_path / "m.pt")


def test_training_refuses_one_class(data):
    one = data.subset(np.flatnonzero(data.labels == 1))
    with pytest.raises(ModelError, match="both labels"):
        fit(one, small_config(), seed=0)


def test_block_folds_never_split_a_block():
    labels = np.array([1, 0] * 20)
    groups = [f"B{i // 4}" for i in range(40)]
    folds = block_folds(labels, groups, 5, seed=0)
    for g in set(groups):
        assert len({folds[i] for i in range(40) if groups[i] == g}) == 1
    with pytest.raises(ModelError, match="blocks"):
        block_folds(labels[:8], groups[:8], 5, seed=0)


def test_texty_block_key():
    assert texty_block_key("51.2887839_26.8958500_05_Oct_2015_GMT_super_6.png") == "B512_268"
    assert texty_block_key("whatever.png") == "Iwhatever.png"


def test_threshold_reaches_target_precision():
    y = np.array([0, 0, 0, 0, 1, 0, 1, 1, 1, 1])
    p = np.linspace(0.05, 0.95, 10)
    t = choose_threshold(y, p, 0.95)
    m = binary_metrics(y, p, t)
    assert m["precision"] >= 0.95 and m["recall"] == 0.8


def test_recall_threshold_is_the_highest_keeping_the_target_recall():
    y = np.array([0, 0, 0, 0, 1, 0, 1, 1, 1, 1])
    p = np.linspace(0.05, 0.95, 10)
    t = recall_threshold(y, p, 0.8)
    assert binary_metrics(y, p, t)["recall"] == 0.8 and t == pytest.approx((p[6] + p[5]) / 2)
    t = recall_threshold(y, p, 0.97)  # every positive: halfway below the lowest one
    assert binary_metrics(y, p, t)["recall"] == 1.0 and t == pytest.approx((p[4] + p[3]) / 2)


def test_a_field_is_found_when_any_of_its_positive_crops_reaches_the_threshold():
    # Fields a (2 positives, 1 negative), b (1 positive), c (2 negatives), d (1 positive).
    fields = ["a", "a", "a", "b", "c", "c", "d"]
    y = np.array([1, 1, 0, 1, 0, 0, 1])
    p = np.array([0.2, 0.9, 0.95, 0.4, 0.6, 0.1, 0.05])
    scores, positive = field_scores(y, p, fields)
    assert scores.tolist() == [0.9, 0.4, 0.6, 0.05] and positive.tolist() == [1, 1, 0, 1]  # a's negative not counted
    # Two of three fields (a and b) at 0.4 while crop recall is 2 of 4 there: the threshold sits below b's 0.4.
    t = field_recall_threshold(y, p, fields, 0.6)
    assert t == pytest.approx((0.4 + 0.2) / 2) and recall_threshold(y, p, 0.6) < t
    assert field_recall_threshold(y, p, fields, 0.97) == pytest.approx(0.05)  # nothing scored lower: d's own score


@pytest.mark.slow
def test_parallel_training_matches_inline_and_mixed_ensembles(data):
    from dataclasses import replace

    from amberwatch.model.train import member_configs, train_networks

    config = small_config(epochs=1)
    gray = replace(config, net=replace(config.net, grayscale=True))
    jobs = [(np.arange(len(data)), config, 1), (np.arange(len(data)), gray, 2)]
    inline, parallel = train_networks(data, jobs, workers=1), train_networks(data, jobs, workers=2)
    for a, b in zip(inline, parallel):
        for key in a:
            assert np.array_equal(a[key].numpy(), b[key].numpy()), key
    assert len(member_configs(replace(config, members=3))) == 3
    clf = fit(data, [config, gray], seed=0)
    assert len(clf.state_dicts) == 2 and clf.predict_proba(data.chips[:2]).shape == (2,)
    bad = replace(config, net=replace(config.net, window_cells=3))
    with pytest.raises(ModelError, match="share"):
        member_configs([config, bad])
