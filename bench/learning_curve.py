"""A measured learning curve for a new place (issue 30 items 3 and 4), on the Texty crops and cached features.

A "new place" is held out: two positive 0.1-degree blocks picked by seed, with the negatives of every block
within 2 blocks (5 x 5 blocks each; positives of unpicked blocks stay in training, as in block CV). The base model
is the pretrained recipe's head trained without them, at the threshold its own block CV chooses (precision 0.95,
as `train`). The held-out crops are split by source image into a label half (the candidates) and a test half
(never labelled, the same for every strategy). Two positives of the label half start every run: the one the base
model scores highest (a detection a reviewer confirms) and one other at random (a reader's missed-site report).
Then in rounds each strategy (model/strategies.py) picks K more, they join the training set with their true
labels, the head is trained again (cached features) and the test half is scored.

Per round and strategy: precision and recall at the model's threshold, AP, recall at precision >= 0.95 (the best
threshold on the test half: what the ranking allows), mean and sd over the held-out sets; the labels needed to reach
recall 0.85 at precision 0.95. Levers (item 4), on each strategy's own picks at some label counts: the local
examples weighted w, and the threshold chosen again on the local labels' scores before they were labelled.

Usage: python bench/learning_curve.py [--sets 5] [--k 4] [--max-labels 40] [--out curve.jsonl]
The first run computes the backbone features of the 881 crops (about 10 minutes on one core) into --feature-cache.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from amberwatch.model.backbone import FEATURE_DIM
from amberwatch.model.dataset import load_folder
from amberwatch.model.metrics import binary_metrics, choose_threshold
from amberwatch.model.pretrained import data_features, fit_head
from amberwatch.model.recipes import pretrained_recipe
from amberwatch.model.strategies import STRATEGIES, SelectionPool, select, unit_rows
from amberwatch.model.train import block_folds

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "texty-amber"
CACHE = Path.home() / ".cache" / "amberwatch" / "texty-features.sqlite"
TARGET_RECALL, TARGET_PRECISION = 0.85, 0.95
SEEDS_PER_RUN = 2
_IMAGE = re.compile(r"^(?:positive|negative)/(?P<image>-?\d+\.\d+_-?\d+\.\d+)_")


@dataclass
class Data:
    """The crops' cached features and what the simulation needs of each crop."""

    feats: np.ndarray  # (N, views, F) training rows
    test_x: np.ndarray  # (N, F) view 0, as a scan scores a crop
    unit: np.ndarray  # (N, D) unit rows of the mean features over the 8 flips/rotations
    labels: np.ndarray
    blocks: list[str]
    images: list[str]


@dataclass
class HeldOut:
    """One simulated new place."""

    seed: int
    blocks: list[str]
    train: np.ndarray  # indices the base model trains on
    candidates: np.ndarray  # label half
    test: np.ndarray  # test half
    threshold: float  # the base model's block-CV threshold
    base_probs: np.ndarray  # (N,) the base model's P(mining) of every crop


def load_data(data_dir: Path, cache: Path, views: int) -> Data:
    """The Texty crops' features (computed once into the cache), their blocks and source images."""
    chips = load_folder(data_dir)
    feats = data_features(chips, pretrained_recipe(feature_cache=str(cache)), log=print)
    means = feats[:, :8, :FEATURE_DIM].mean(axis=1)
    images = [m["image"] if (m := _IMAGE.match(n)) else n for n in chips.names]
    spaced = np.unique(np.linspace(0, feats.shape[1] - 1, views).round().astype(int))  # flips, turns, jitter
    return Data(feats[:, spaced], feats[:, 0], unit_rows(means), chips.labels, chips.groups, images)


def _block_xy(block: str) -> tuple[int, int]:
    lat, lon = block[1:].split("_")
    return int(lat), int(lon)


def _around(block: str, all_blocks: set[str], radius: int) -> set[str]:
    lat, lon = _block_xy(block)
    near = lambda b: max(abs(a - c) for a, c in zip(_block_xy(b), (lat, lon))) <= radius  # noqa: E731
    return {b for b in all_blocks if b.startswith("B") and near(b)}


def place_sets(
    data: Data, n_sets: int, min_train_pos: int, min_pool_pos: int, radius: int
) -> list[tuple[int, list[str]]]:
    """(seed, held-out blocks) of n_sets different places: two positive blocks by seed, and the negatives of every
    block around them, keeping >= min_train_pos positives for the base model and >= min_pool_pos in the place."""
    positive_blocks = sorted({b for b, y in zip(data.blocks, data.labels) if y})
    found: list[tuple[int, list[str]]] = []
    for seed in range(1000):
        picked = sorted(np.random.default_rng(seed).choice(positive_blocks, 2, replace=False))
        mask = place_mask(data, picked, radius)
        ok = data.labels[mask].sum() >= min_pool_pos and data.labels[~mask].sum() >= min_train_pos
        if ok and picked not in [p for _, p in found]:
            found.append((seed, picked))
        if len(found) == n_sets:
            break
    return found


def place_mask(data: Data, picked: list[str], radius: int) -> np.ndarray:
    """The place's crops: every crop of the picked blocks, and the negatives of the blocks within `radius`."""
    around = set().union(*(_around(b, set(data.blocks), radius) for b in picked))
    return np.isin(data.blocks, picked) | (np.isin(data.blocks, sorted(around)) & (data.labels == 0))


def split_by_image(idx: np.ndarray, data: Data, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two halves of the place's crops, never splitting a source image, with about half the positives each."""
    images = sorted({data.images[i] for i in idx})
    rng.shuffle(images)
    pos = {im: sum(int(data.labels[i]) for i in idx if data.images[i] == im) for im in images}
    halves: list[set[str]] = [set(), set()]
    totals = [[0, 0], [0, 0]]  # positives, crops
    for im in sorted(images, key=lambda m: -pos[m]):  # stable: the shuffled order breaks ties
        h = min((0, 1), key=lambda j: (totals[j][0], totals[j][1]) if pos[im] else (totals[j][1], totals[j][0]))
        halves[h].add(im)
        totals[h][0] += pos[im]
        totals[h][1] += sum(1 for i in idx if data.images[i] == im)
    first = np.array([i for i in idx if data.images[i] in halves[0]], dtype=np.int64)
    return first, np.array([i for i in idx if data.images[i] in halves[1]], dtype=np.int64)


def probs_of(data: Data, train: np.ndarray, recipe, weights: np.ndarray | None = None) -> np.ndarray:
    """P(mining) of every crop from a head trained on `train` (with per-example weights)."""
    head = fit_head(data.feats[train], data.labels[train], recipe, weights)
    return 1.0 / (1.0 + np.exp(-head.logits(data.test_x).astype(np.float64)))


def cv_threshold(data: Data, train: np.ndarray, recipe, folds: int) -> float:
    """The threshold `train` would choose: block CV over the training crops, precision 0.95."""
    fold = block_folds(data.labels[train], [data.blocks[i] for i in train], folds, 0)
    oof = np.zeros(len(train))
    for k in range(folds):
        oof[fold == k] = probs_of(data, train[fold != k], recipe)[train[fold == k]]
    return choose_threshold(data.labels[train], oof, min_precision=TARGET_PRECISION)


def held_out(data: Data, seed: int, blocks: list[str], recipe, args) -> HeldOut:
    """The place's halves and its base model (threshold by block CV of the other crops)."""
    mask = place_mask(data, blocks, args.radius)
    train = np.flatnonzero(~mask)
    candidates, test = split_by_image(np.flatnonzero(mask), data, np.random.default_rng(seed))
    threshold = cv_threshold(data, train, recipe, args.folds)
    return HeldOut(seed, blocks, train, candidates, test, threshold, probs_of(data, train, recipe))


def recall_at_precision(labels: np.ndarray, probs: np.ndarray, precision: float) -> float:
    """Highest recall at any threshold where precision >= `precision` (0 if none)."""
    order = np.argsort(-probs, kind="stable")
    y = labels[order].astype(bool)
    tp = np.cumsum(y)
    ok = tp / np.arange(1, len(y) + 1) >= precision
    ok &= np.r_[probs[order][1:] < probs[order][:-1], True]  # only cut between distinct scores
    return float(tp[ok].max() / max(1, y.sum())) if ok.any() else 0.0


def score(data: Data, place: HeldOut, probs: np.ndarray, threshold: float) -> dict:
    """The test half's metrics at `threshold`, and its recall at precision 0.95."""
    y, p = data.labels[place.test], probs[place.test]
    m = binary_metrics(y, p, threshold)
    return {
        "precision": m["precision"],
        "recall": m["recall"],
        "ap": m["average_precision"],
        "r_at_p95": round(recall_at_precision(y, p, TARGET_PRECISION), 4),
        "threshold": round(threshold, 4),
    }


def local_threshold(labels: np.ndarray, prior_probs: np.ndarray, fallback: float) -> float:
    """A threshold chosen on the local labels' scores before they were labelled (precision 0.95), else fallback."""
    if labels.min() == labels.max():
        return fallback
    return choose_threshold(labels, prior_probs, min_precision=TARGET_PRECISION)


def seed_positives(data: Data, place: HeldOut) -> list[int]:
    """The base model's top-scored positive of the label half, and another positive at random."""
    pos = place.candidates[data.labels[place.candidates] == 1]
    top = int(pos[np.argmax(place.base_probs[pos])])
    rest = pos[pos != top]
    return [top] if not len(rest) else [top, int(np.random.default_rng(place.seed).choice(rest))]


def run_strategy(data: Data, place: HeldOut, strategy: str, args, recipe, emit) -> None:
    """One learning curve: rounds of K picks, retrain, score; levers at the checkpoints."""
    labelled = seed_positives(data, place)
    prior = {i: float(place.base_probs[i]) for i in labelled}
    probs = place.base_probs
    while len(labelled) < args.max_labels:
        k = args.k - len(labelled) % args.k if len(labelled) % args.k else args.k
        pool = _pool(data, place, probs, labelled)
        left = np.setdiff1d(place.candidates, labelled)
        picks = select(strategy, pool, left, k, seed=place.seed * 1000 + len(labelled))
        if not len(picks):
            break
        prior.update({int(i): float(probs[i]) for i in picks})
        labelled += [int(i) for i in picks]
        train = np.concatenate([place.train, labelled])
        probs = probs_of(data, train, recipe)
        record = {"set": place.seed, "strategy": strategy, "labels": len(labelled), "variant": "w1"}
        local = data.labels[labelled]
        record["local_pos"] = int(local.sum())
        emit({**record, **score(data, place, probs, place.threshold)})
        t_local = local_threshold(local, np.array([prior[i] for i in labelled]), place.threshold)
        emit({**record, "variant": "local-threshold", **score(data, place, probs, t_local)})
        if len(labelled) in args.lever_labels:
            _weight_levers(data, place, train, len(place.train), record, args, recipe, emit)


def _pool(data: Data, place: HeldOut, probs: np.ndarray, labelled: list[int]) -> SelectionPool:
    lab = np.asarray(labelled, dtype=np.int64)
    return SelectionPool(probs, place.threshold, data.unit, lab, lab[data.labels[lab] == 1])


def _weight_levers(data: Data, place: HeldOut, train: np.ndarray, n_base: int, record: dict, args, recipe, emit):
    for w in args.weights:
        weights = np.ones(len(train))
        weights[n_base:] = w
        probs = probs_of(data, train, recipe, weights)
        emit({**record, "variant": f"w{w:g}", **score(data, place, probs, place.threshold)})


def summarise(records: list[dict], variant: str, key_labels: list[int]) -> list[str]:
    """Table rows: per strategy and label count, mean ± sd over sets of P, R, AP, R@P95."""
    lines = [f"variant {variant}: P / R at the threshold, AP, recall at precision 0.95 (mean ± sd over sets)"]
    lines.append(f"{'strategy':<10}{'labels':>7}  {'P':>11}  {'R':>11}  {'AP':>11}  {'R@P95':>11}")
    base = [r for r in records if r["strategy"] == "base"]
    rows = [("base", 0, base)] if variant == "w1" else []
    for s in sorted({r["strategy"] for r in records} - {"base"}, key=STRATEGIES.index):
        rows += [
            (s, n, [r for r in records if (r["strategy"], r["labels"], r["variant"]) == (s, n, variant)])
            for n in key_labels
        ]
    for s, n, rs in rows:
        if rs:
            cells = [_ms([r[m] for r in rs]) for m in ("precision", "recall", "ap", "r_at_p95")]
            lines.append(f"{s:<10}{n:>7}  " + "  ".join(cells))
    return lines


def _ms(values: list) -> str:
    v = np.array([np.nan if x is None else x for x in values], dtype=np.float64)
    return f"{np.nanmean(v):.3f}±{np.nanstd(v):.3f}"


def labels_needed(records: list[dict], variant: str, max_labels: int) -> list[str]:
    """Per strategy: the labels each set needed to reach recall 0.85 at precision 0.95 (ranking: R@P95; at the
    threshold: P and R there)."""
    lines = [f"labels to reach recall {TARGET_RECALL} at precision {TARGET_PRECISION} per set ({variant}):"]
    for s in sorted({r["strategy"] for r in records} - {"base"}, key=STRATEGIES.index):
        rs = [
            r
            for r in records
            if r["strategy"] in (s, "base") and r["variant"] in (variant, "w1") and _is(r, s, variant)
        ]
        ranking = [_first(rs, z, lambda r: r["r_at_p95"] >= TARGET_RECALL) for z in sorted({r["set"] for r in rs})]
        at_t = [
            _first(rs, z, lambda r: r["recall"] >= TARGET_RECALL and r["precision"] >= TARGET_PRECISION)
            for z in sorted({r["set"] for r in rs})
        ]
        fmt = lambda xs: ", ".join(f"not by {max_labels}" if x is None else str(x) for x in xs)  # noqa: E731
        lines.append(f"  {s:<10} ranking (R@P95): {fmt(ranking)} | at the threshold: {fmt(at_t)}")
    return lines


def _is(record: dict, strategy: str, variant: str) -> bool:
    """A record of the strategy's run in that variant, or the base model (0 labels, every run's start)."""
    return record["strategy"] == "base" or (record["strategy"] == strategy and record["variant"] == variant)


def _first(records: list[dict], set_seed: int, ok) -> int | None:
    hits = sorted(r["labels"] for r in records if r["set"] == set_seed and ok(r))
    return hits[0] if hits else None


def lever_effects(records: list[dict], variants: list[str], key_labels: list[int]) -> list[str]:
    """Per lever and label count: its mean change against w1 on the same picks (over strategies and sets)."""
    lines = ["levers against w1 on the same picks: mean change over strategies and sets (pairs better / worse in R)"]
    w1 = {(r["set"], r["strategy"], r["labels"]): r for r in records if r["variant"] == "w1"}
    for variant in variants:
        for n in key_labels:
            pairs = [
                (r, w1[r["set"], r["strategy"], n]) for r in records if r["variant"] == variant and r["labels"] == n
            ]
            if not pairs:
                continue
            delta = {
                m: np.mean([(r[m] or 0) - (b[m] or 0) for r, b in pairs])
                for m in ("precision", "recall", "ap", "r_at_p95")
            }
            better = sum(r["recall"] > b["recall"] for r, b in pairs)
            worse = sum(r["recall"] < b["recall"] for r, b in pairs)
            lines.append(
                f"  {variant:<16}{n:>3} labels: dP {delta['precision']:+.3f} dR {delta['recall']:+.3f} "
                f"dAP {delta['ap']:+.3f} dR@P95 {delta['r_at_p95']:+.3f} ({better} / {worse} of {len(pairs)})"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the simulation, print the tables, write the JSON lines."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--feature-cache", type=Path, default=CACHE)
    ap.add_argument("--sets", type=int, default=5)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--max-labels", type=int, default=40)
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    ap.add_argument("--weights", type=float, nargs="*", default=[5.0, 20.0], help="local weights tried (levers)")
    ap.add_argument("--lever-labels", type=int, nargs="*", default=[20, 40])
    ap.add_argument(
        "--views",
        type=int,
        default=4,
        help="training rows per crop, spread over the 8 flips/turns and 4 jittered copies (12: all, as train)",
    )
    ap.add_argument("--folds", type=int, default=5, help="block-CV folds of the base model's threshold")
    ap.add_argument("--radius", type=int, default=2, help="blocks around a picked block whose negatives join it")
    ap.add_argument("--min-train-positives", type=int, default=100)
    ap.add_argument("--min-place-positives", type=int, default=12)
    ap.add_argument("--out", type=Path, default=Path("learning_curve.jsonl"))
    ap.add_argument("--report-only", action="store_true", help="print the tables of an earlier run's --out")
    args = ap.parse_args(argv)
    if args.report_only:
        _report([json.loads(line) for line in args.out.open()], args, 0.0)
        return 0
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    data = load_data(args.data, args.feature_cache, args.views)
    recipe = pretrained_recipe()
    records: list[dict] = []
    with args.out.open("w") as out:

        def emit(record: dict) -> None:
            records.append(record)
            out.write(json.dumps(record) + "\n")
            out.flush()

        places = place_sets(data, args.sets, args.min_train_positives, args.min_place_positives, args.radius)
        for seed, blocks in places:
            place = held_out(data, seed, blocks, recipe, args)
            _describe(data, place, time.perf_counter() - t0)
            emit({"set": seed, "strategy": "base", "labels": 0, "variant": "w1", "blocks": blocks,
                  **score(data, place, place.base_probs, place.threshold)})  # fmt: skip
            for strategy in args.strategies:
                run_strategy(data, place, strategy, args, recipe, emit)
    _report(records, args, time.perf_counter() - t0)
    return 0


def _describe(data: Data, place: HeldOut, seconds: float) -> None:
    n = lambda idx: f"{int(data.labels[idx].sum())} pos / {int((data.labels[idx] == 0).sum())} neg"  # noqa: E731
    print(
        f"[{seconds:.0f} s] set {place.seed}: blocks {' '.join(place.blocks)}; train {n(place.train)}, "
        f"label half {n(place.candidates)}, test half {n(place.test)}; threshold {place.threshold:.3f}",
        flush=True,
    )


def _report(records: list[dict], args, seconds: float) -> None:
    marks = sorted({args.k, 8, 12, 20, 28, args.max_labels} & set(range(args.k, args.max_labels + 1, args.k)))
    for variant in ["w1", "local-threshold", *(f"w{w:g}" for w in args.weights)]:
        keys = marks if variant in ("w1", "local-threshold") else args.lever_labels
        print("\n".join(["", *summarise(records, variant, keys)]))
    print("\n".join(["", *labels_needed(records, "w1", args.max_labels)]))
    levers = ["local-threshold", *(f"w{w:g}" for w in args.weights)]
    print("\n".join(["", *lever_effects(records, levers, args.lever_labels)]))
    print(f"\n{len(records)} records in {args.out} ({seconds:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
