"""Which unlabelled examples to label next: the selection strategies of the learning curve (bench/learning_curve.py)
and of label suggestions.

Every strategy picks k indices among `candidates` (indices into the arrays of a `SelectionPool`), best first:
- ``uncertain``: scores closest to the model's threshold (in logits);
- ``similar``: most like the place's confirmed sites (cosine similarity of pooled features to the nearest known
  positive; no known positive: as ``uncertain``);
- ``spread``: farthest-first (k-centre) over the features, away from what is labelled already;
- ``top``: the highest scores (the detections a reviewer would check; its negatives are hard negatives);
- ``random``: the baseline;
- ``mix``: picks taken in turn from ``similar``, ``uncertain`` and ``spread``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from amberwatch.errors import InvalidInputError

STRATEGIES = ("uncertain", "similar", "spread", "top", "random", "mix")
MIX_ORDER = ("similar", "uncertain", "spread")


@dataclass(frozen=True)
class SelectionPool:
    """What the strategies look at: per example its model probability, its unit feature vector, and which
    examples are labelled already (of those, which are positives)."""

    probs: np.ndarray  # (N,) P(mining) under the current model
    threshold: float  # the model's threshold
    unit_features: np.ndarray  # (N, D) rows of length 1 (unit_rows), for cosine similarity and distances
    labelled: np.ndarray  # indices of labelled examples
    positives: np.ndarray  # indices of labelled examples that are mining

    def __post_init__(self) -> None:
        if len(self.probs) != len(self.unit_features):
            raise InvalidInputError(
                f"selection pool needs one feature row per probability, got {len(self.unit_features)} rows "
                f"for {len(self.probs)} probabilities"
            )


def unit_rows(features: np.ndarray, centre: np.ndarray | None = None) -> np.ndarray:
    """Rows centred (on `centre`, default their mean) and scaled to length 1, for cosine similarity."""
    x = np.asarray(features, dtype=np.float64)
    x = x - (x.mean(axis=0) if centre is None else centre)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def _logit(p: np.ndarray | float) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(q / (1 - q))


def most_uncertain(pool: SelectionPool, candidates: np.ndarray, k: int) -> np.ndarray:
    """The k candidates whose logit is closest to the threshold's."""
    gap = np.abs(_logit(pool.probs[candidates]) - _logit(pool.threshold))
    return candidates[np.argsort(gap, kind="stable")[:k]]


def top_scored(pool: SelectionPool, candidates: np.ndarray, k: int) -> np.ndarray:
    """The k candidates the model scores highest."""
    return candidates[np.argsort(-pool.probs[candidates], kind="stable")[:k]]


def most_similar(pool: SelectionPool, candidates: np.ndarray, k: int) -> np.ndarray:
    """The k candidates most like a known positive (max cosine similarity); none known: most_uncertain."""
    if len(pool.positives) == 0:
        return most_uncertain(pool, candidates, k)
    similarity = (pool.unit_features[candidates] @ pool.unit_features[pool.positives].T).max(axis=1)
    return candidates[np.argsort(-similarity, kind="stable")[:k]]


def farthest_first(pool: SelectionPool, candidates: np.ndarray, k: int) -> np.ndarray:
    """k-centre greedy: each pick is the candidate farthest from the labelled examples and the earlier picks
    (nothing labelled: the first pick is the candidate nearest the candidates' mean)."""
    x = pool.unit_features[candidates]
    picks: list[int] = []
    if len(pool.labelled):
        distance = np.min(_distances(x, pool.unit_features[pool.labelled]), axis=1)
    else:
        distance = np.full(len(candidates), np.inf)
        picks.append(int(np.argmin(_distances(x, x.mean(axis=0, keepdims=True))[:, 0])))
    for _ in range(min(k, len(candidates))):
        if picks:
            distance = np.minimum(distance, _distances(x, x[picks[-1] : picks[-1] + 1])[:, 0])
            distance[picks] = -1.0
        if len(picks) == min(k, len(candidates)):
            break
        picks.append(int(np.argmax(distance)))
    return candidates[np.asarray(picks, dtype=np.int64)]


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of a and of b, (len(a), len(b))."""
    squared = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(squared, 0.0))


def mixed(pool: SelectionPool, candidates: np.ndarray, k: int) -> np.ndarray:
    """k picks taken in turn from similar, uncertain and spread (each pick leaves the candidates)."""
    left = np.asarray(candidates, dtype=np.int64)
    picks: list[int] = []
    for i in range(min(k, len(left))):
        chosen = int(select(MIX_ORDER[i % len(MIX_ORDER)], pool, left, 1)[0])
        picks.append(chosen)
        left = left[left != chosen]
    return np.asarray(picks, dtype=np.int64)


def select(
    strategy: str, pool: SelectionPool, candidates: Sequence[int] | np.ndarray, k: int, seed: int = 0
) -> np.ndarray:
    """Indices of the k candidates `strategy` (one of STRATEGIES) would label next, best first."""
    if k < 0:
        raise InvalidInputError(f"the number of examples to pick must be at least 0, got {k}")
    cands = np.asarray(candidates, dtype=np.int64)
    if strategy == "random":
        return np.random.default_rng(seed).permutation(cands)[:k]
    chooser = {
        "uncertain": most_uncertain,
        "similar": most_similar,
        "spread": farthest_first,
        "top": top_scored,
        "mix": mixed,
    }.get(strategy)
    if chooser is None:
        raise InvalidInputError(f"unknown selection strategy {strategy!r} (expected one of {', '.join(STRATEGIES)})")
    return chooser(pool, cands, k) if len(cands) and k else np.zeros(0, dtype=np.int64)
