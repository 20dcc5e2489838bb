"""Selection strategies (which examples to label next) on small synthetic feature arrays."""

from __future__ import annotations

import numpy as np
import pytest

from amberwatch.errors import InvalidInputError
from amberwatch.model.strategies import STRATEGIES, SelectionPool, select, unit_rows


def _pool(labelled=(), positives=(), threshold: float = 0.5) -> SelectionPool:
    """Two clusters in 3-D: 0-4 near +x (sites), 5-9 near +y (fields), 10-11 far along +z; probabilities 0..1."""
    rng = np.random.default_rng(0)
    centres = np.repeat(np.eye(3) * 5, [5, 5, 2], axis=0) + rng.normal(0, 0.1, (12, 3))
    probs = np.array([0.95, 0.9, 0.85, 0.52, 0.3, 0.05, 0.1, 0.45, 0.2, 0.15, 0.6, 0.02])
    return SelectionPool(
        probs, threshold, unit_rows(centres, centre=np.zeros(3)), np.array(labelled, int), np.array(positives, int)
    )


def test_uncertain_picks_the_scores_closest_to_the_threshold_in_logits():
    pool = _pool()
    assert list(select("uncertain", pool, np.arange(12), 3)) == [3, 7, 10]
    assert list(select("uncertain", _pool(threshold=0.9), np.arange(12), 2)) == [1, 2]


def test_top_picks_the_highest_scores_among_the_candidates_only():
    assert list(select("top", _pool(), [1, 2, 5, 11], 2)) == [1, 2]


def test_similar_ranks_by_cosine_to_the_known_positives_and_without_any_acts_as_uncertain():
    pool = _pool(labelled=[0], positives=[0])
    assert set(select("similar", pool, np.arange(1, 12), 4)) == {1, 2, 3, 4}
    pool = _pool(labelled=[5], positives=[])
    assert list(select("similar", pool, np.arange(12), 2)) == list(select("uncertain", pool, np.arange(12), 2))


def test_spread_visits_every_cluster_before_a_second_pick_in_one():
    picks = select("spread", _pool(), np.arange(12), 3)
    clusters = {int(i) // 5 for i in picks}  # 0-4 -> 0, 5-9 -> 1, 10-11 -> 2
    assert clusters == {0, 1, 2}
    picks = select("spread", _pool(labelled=[0, 5]), np.arange(1, 12), 1)  # far from both labelled clusters
    assert int(picks[0]) in (10, 11)


def test_mix_takes_similar_uncertain_and_spread_in_turn_without_repeats():
    pool = _pool(labelled=[0], positives=[0])
    picks = select("mix", pool, np.arange(1, 12), 4)
    assert len(set(picks)) == 4
    assert int(picks[0]) in (1, 2, 3, 4)  # similar: the sites' cluster
    assert int(picks[1]) == 3 or int(picks[1]) == 7  # uncertain among what is left


def test_random_is_seeded_and_every_strategy_returns_k_candidates_or_all():
    pool = _pool(labelled=[0], positives=[0])
    again = select("random", pool, np.arange(12), 5, seed=3)
    assert list(select("random", pool, np.arange(12), 5, seed=3)) == list(again)
    for strategy in STRATEGIES:
        picks = select(strategy, pool, np.arange(1, 12), 4)
        assert len(picks) == 4 and len(set(picks)) == 4 and set(picks) <= set(range(1, 12)), strategy
        assert len(select(strategy, pool, [4, 6], 5)) == 2
        assert len(select(strategy, pool, [], 5)) == 0


def test_unknown_strategies_and_bad_pools_are_refused_naming_the_value():
    with pytest.raises(InvalidInputError, match="'nearest'"):
        select("nearest", _pool(), np.arange(12), 2)
    with pytest.raises(InvalidInputError, match="-1"):
        select("top", _pool(), np.arange(12), -1)
    with pytest.raises(InvalidInputError, match="3 rows for 12"):
        SelectionPool(np.zeros(12), 0.5, np.zeros((3, 2)), np.zeros(0, int), np.zeros(0, int))
