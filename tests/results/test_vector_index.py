"""The similarity index: exact top-k, IVF recall against it, save/load round trip, refusal of empty input."""

from __future__ import annotations

import numpy as np
import pytest

from amberwatch.errors import InvalidInputError
from amberwatch.results.vector_index import ExactIndex, IvfIndex, build_index, unit_rows

DIMS = 64


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    """5,000 float16 rows from 50 Gaussian clusters (not unit length: the index normalises them)."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((50, DIMS))
    label = rng.integers(0, 50, 5000)
    return (centres[label] + 0.4 * rng.standard_normal((5000, DIMS))).astype(np.float16)


@pytest.fixture(scope="module")
def queries(vectors: np.ndarray) -> np.ndarray:
    """20 perturbed rows, unit length."""
    rng = np.random.default_rng(1)
    q = vectors[rng.choice(len(vectors), 20, replace=False)].astype(np.float32)
    return unit_rows(q + 0.1 * rng.standard_normal(q.shape)).astype(np.float32)


@pytest.fixture(scope="module")
def ivf(vectors: np.ndarray) -> IvfIndex:
    index = build_index(vectors, exact_below=0)
    assert isinstance(index, IvfIndex)
    return index


def test_exact_index_returns_the_true_top_k_in_order(vectors, queries):
    index = ExactIndex(vectors)
    rows = unit_rows(vectors).astype(np.float64)
    for q in queries:
        scores, top = index.search(q, 10)
        truth = rows @ q.astype(np.float64)
        assert list(top) == list(np.argsort(-truth, kind="stable")[:10])
        np.testing.assert_allclose(scores, truth[top], atol=1e-5)
        assert np.all(np.diff(scores) <= 0)


def test_exact_index_k_beyond_the_rows_returns_every_row(vectors, queries):
    scores, top = ExactIndex(vectors[:7]).search(queries[0], 50)
    assert sorted(top.tolist()) == list(range(7))
    assert np.all(np.diff(scores) <= 0)


def test_ivf_recall_at_10_against_exact(vectors, queries, ivf):
    exact = ExactIndex(vectors)
    recall = np.mean([len(np.intersect1d(ivf.search(q, 10)[1], exact.search(q, 10)[1])) / 10 for q in queries])
    assert recall >= 0.9
    assert ivf.index.ntotal == len(vectors)


def test_ivf_save_load_round_trip(tmp_path, queries, ivf):
    path = tmp_path / "index.faiss"
    ivf.save(path)
    assert not (tmp_path / "index.faiss.tmp").exists()
    loaded = IvfIndex.load(path)
    for q in queries:
        before, after = ivf.search(q, 10), loaded.search(q, 10)
        np.testing.assert_array_equal(before[1], after[1])
        np.testing.assert_array_equal(before[0], after[0])


def test_build_index_picks_exact_below_the_threshold(vectors):
    assert isinstance(build_index(vectors, exact_below=len(vectors) + 1), ExactIndex)


@pytest.mark.parametrize("shape", [(0, DIMS), (0,), (5,)])
def test_build_index_refuses_empty_or_flat_input(shape):
    with pytest.raises(InvalidInputError):
        build_index(np.zeros(shape, dtype=np.float16))
