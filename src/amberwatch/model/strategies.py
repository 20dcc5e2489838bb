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

``suggest_tiles`` applies them to the tiles of a finished scan (their max probability and embedding): the next
tiles to label, each with why it was chosen (``amberwatch label suggest``, the /label strategy picker).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import mercantile
import numpy as np

from amberwatch.errors import InvalidInputError, NotFoundError
from amberwatch.results.store import get_scan, scan_tiles_at, tile_embeddings

STRATEGIES = ("uncertain", "similar", "spread", "top", "random", "mix")
MIX_ORDER = ("similar", "uncertain", "spread")
SUGGEST_STRATEGIES = ("uncertain", "similar", "spread", "random", "mix")
# The learning curve (scripts/experiments/RESULTS.md, round 12): most uncertain gains most per label.
DEFAULT_SUGGEST_STRATEGY = "uncertain"


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


@dataclass(frozen=True)
class TileSuggestion:
    """One tile of a scan to label next: where it is, the model's probability, and why it was chosen."""

    z: int
    x: int
    y: int
    lon_deg: float
    lat_deg: float
    prob: float  # the tile's highest cell probability
    reason: str

    def as_dict(self) -> dict:
        """JSON-ready form (CLI --json, web)."""
        return {
            "tile": f"{self.z}/{self.x}/{self.y}",
            "z": self.z,
            "x": self.x,
            "y": self.y,
            "lon": round(self.lon_deg, 6),
            "lat": round(self.lat_deg, 6),
            "prob": round(self.prob, 4),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Suggestions:
    """The tiles a strategy proposes for a scan, best first, and a note when it could not do what it says."""

    scan_id: int
    strategy: str
    threshold: float
    tiles: tuple[TileSuggestion, ...]
    note: str | None = None

    def as_dict(self) -> dict:
        """JSON-ready form (CLI --json, web)."""
        return {
            "scan_id": self.scan_id,
            "strategy": self.strategy,
            "threshold": self.threshold,
            "note": self.note,
            "tiles": [t.as_dict() for t in self.tiles],
        }


@dataclass(frozen=True)
class _ScanPool:
    """A scan's done tiles as a selection pool: their (x, y) in pool order."""

    zoom: int
    xy: list[tuple[int, int]]
    pool: SelectionPool


def _scan_pool(
    conn: sqlite3.Connection, scan_id: int, strategy: str, labelled: Collection, positives: Collection
) -> _ScanPool:
    """The scan's done tiles with a probability, their embeddings (zeros when the scan kept none) and the labels."""
    scan = get_scan(conn, scan_id)
    probs = {(t.x, t.y): t.max_prob for t in scan_tiles_at(conn, scan_id, scan.zoom) if t.status == "done"}
    probs = {xy: p for xy, p in probs.items() if p is not None}
    emb_xy, vectors = tile_embeddings(conn, scan_id)
    rows = {(int(x), int(y)): i for i, (x, y) in enumerate(emb_xy)}
    if not rows and strategy in ("similar", "spread", "mix"):
        raise NotFoundError(
            f"scan {scan_id} kept no tile embeddings (its model makes none): strategy {strategy!r} needs them,"
            " use 'uncertain' or 'random'"
        )
    xy = sorted(xy for xy in probs if xy in rows or not rows)
    features = vectors[[rows[t] for t in xy]] if rows else np.zeros((len(xy), 1))
    index = {t: i for i, t in enumerate(xy)}
    pos = np.asarray(sorted(index[t] for t in positives if t in index), dtype=np.int64)
    done = {index[t] for t in labelled if t in index} | set(pos.tolist())
    pool = SelectionPool(
        probs=np.asarray([probs[t] for t in xy], dtype=np.float64),
        threshold=float(scan.model_threshold),
        unit_features=unit_rows(features) if len(xy) else np.zeros((0, 1)),
        labelled=np.asarray(sorted(done), dtype=np.int64),
        positives=pos,
    )
    return _ScanPool(scan.zoom, xy, pool)


def _reason(strategy: str, pool: SelectionPool, i: int) -> str:
    """Why pick i was chosen, in words."""
    if strategy == "similar" and len(pool.positives):
        similarity = float((pool.unit_features[pool.positives] @ pool.unit_features[i]).max())
        return f"{similarity:.0%} like a confirmed site"
    if strategy in ("uncertain", "similar"):
        extra = "" if strategy == "uncertain" else " (no confirmed site to compare with)"
        return f"P(mining) {pool.probs[i]:.0%}, near the threshold {pool.threshold:.0%}{extra}"
    if strategy == "spread":
        return "far from the tiles labelled or picked before it"
    return "drawn at random"


def suggest_tiles(
    conn: sqlite3.Connection,
    scan_id: int,
    strategy: str = DEFAULT_SUGGEST_STRATEGY,
    count: int = 20,
    *,
    labelled: Collection[tuple[int, int]] = (),
    positives: Collection[tuple[int, int]] = (),
    seed: int = 0,
) -> Suggestions:
    """The next ``count`` tiles of a scan to label by ``strategy`` (one of SUGGEST_STRATEGIES), best first.

    ``labelled``: (x, y) of tiles labelled or queued already (never proposed); ``positives``: (x, y) of tiles under
    the scan's confirmed sites (what ``similar`` looks for; never proposed either).
    """
    if strategy not in SUGGEST_STRATEGIES:
        raise InvalidInputError(
            f"unknown label strategy {strategy!r} (expected one of {', '.join(SUGGEST_STRATEGIES)})"
        )
    if count <= 0:
        raise InvalidInputError(f"the number of tiles to suggest must be at least 1, got {count}")
    sp = _scan_pool(conn, scan_id, strategy, labelled, positives)
    taken = set(sp.pool.labelled.tolist())
    candidates = np.asarray([i for i in range(len(sp.xy)) if i not in taken], dtype=np.int64)
    picks = select(strategy, sp.pool, candidates, count, seed=seed)
    tiles = []
    for n, i in enumerate(picks.tolist()):
        x, y = sp.xy[i]
        b = mercantile.bounds(x, y, sp.zoom)
        how = MIX_ORDER[n % len(MIX_ORDER)] if strategy == "mix" else strategy
        reason = (f"mix, {how}: " if strategy == "mix" else "") + _reason(how, sp.pool, i)
        tiles.append(
            TileSuggestion(
                sp.zoom, x, y, (b.west + b.east) / 2, (b.south + b.north) / 2, float(sp.pool.probs[i]), reason
            )
        )
    note = None
    if strategy in ("similar", "mix") and not len(sp.pool.positives):
        note = (
            f"scan {scan_id} has no confirmed site yet (a detection reviewed as mining): 'similar' picks the most"
            " uncertain tiles instead"
        )
    return Suggestions(scan_id, strategy, float(sp.pool.threshold), tuple(tiles), note)
