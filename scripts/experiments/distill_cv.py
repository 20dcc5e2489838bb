"""Distillation probe (issue 25): can the fast CNN learn the pretrained model's scores? Block CV on the Texty crops.

Per fold of a 5-fold block split (0.1-degree blocks, split seed 0, the 881 Texty crops only, as `cv.py`): the teacher
(the shipped `pretrained_recipe`, MLP blend head on cached scale-1.0 features) is trained on the training folds; its
scores on those same training crops (IN-SAMPLE, view 0) are the soft targets. One student CNN (`default_config()[0]`,
one member, --epochs) is trained per arm with the same seed, so the batch order, crops, augmentation and pasted
composites are identical and only the targets differ:

- hard: the 0/1 labels (the default recipe's loss);
- soft: BCE against the teacher's in-sample probability (logit / --temperature);
- mix:  BCE against 0.5 x label + 0.5 x that probability;
- xfit: BCE against a CROSS-FITTED teacher probability: each training crop scored by a head trained on the other
  4/5 of the training folds (inner 5-fold block split, seed 0), i.e. the teacher's out-of-sample view of it;
- xmix: 0.5 x label + 0.5 x the cross-fitted probability.
The in-sample teacher reproduces the labels (mean |p - y| ~1e-4 at T=1, no crop between 0.1 and 0.9), so soft and
mix at T=1 are the hard arm in all but name; each fold's JSON line says how soft each kind of target is.

Pasted pit composites (paste_p 0.25) keep their 0/1 composite label in every arm (the teacher never sees them).
Every arm and the teacher score the test fold; a JSON line per fold and a pooled summary over the folds done (pooled
OOF AP, recall at the lowest threshold with pooled precision >= 0.95) go to --out.

    OMP_NUM_THREADS=1 PYTHONPATH=src:. python scripts/experiments/distill_cv.py \
        --data /work/shared/data/texty-amber --feature-cache /work/tmp-distill/features.sqlite \
        --epochs 20 --arms hard,xmix --out /work/tmp-distill/results.jsonl
    python scripts/experiments/distill_cv.py ... --summary [--also OTHER.jsonl]  # pool the fold files written so far
        (--also: average each model's scores with another run's, e.g. a second student seed)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from cv import cached_folder
from sklearn.metrics import average_precision_score, precision_recall_curve

from amberwatch.model.classifier import Classifier
from amberwatch.model.dataset import ChipSet
from amberwatch.model.metrics import binary_metrics, choose_threshold
from amberwatch.model.pretrained import data_features, fit_head, test_features
from amberwatch.model.recipes import default_config, pretrained_recipe
from amberwatch.model.train import block_folds, fit_network

N_FOLDS = 5
SPLIT_SEED = 0


def sigmoid(z: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Logistic function of z / temperature in float64."""
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64) / temperature))


def crossfit_logits(feats: np.ndarray, data: ChipSet, train: np.ndarray, recipe) -> np.ndarray:
    """Teacher logits on the training crops from heads that did not see them (inner 5-fold block split)."""
    inner = block_folds(data.labels[train], [data.groups[i] for i in train], N_FOLDS, SPLIT_SEED)
    out = np.zeros(len(train), dtype=np.float64)
    for j in range(N_FOLDS):
        fit_idx, held = train[inner != j], inner == j
        head = fit_head(feats[fit_idx], data.labels[fit_idx], recipe)
        out[held] = head.logits(test_features(feats[train[held]], recipe))
    return out


def arm_targets(arm: str, labels: np.ndarray, logits: dict[str, np.ndarray], temperature: float) -> np.ndarray:
    """Training targets of an arm from the hard labels and the teacher's logits on the training crops."""
    if arm == "hard":
        return labels.astype(np.float32)
    if arm == "soft":  # in-sample teacher
        return sigmoid(logits["in"], temperature).astype(np.float32)
    if arm == "mix":
        return (0.5 * labels + 0.5 * sigmoid(logits["in"], temperature)).astype(np.float32)
    if arm == "xfit":  # cross-fitted teacher
        return sigmoid(logits["xfit"], temperature).astype(np.float32)
    if arm == "xmix":
        return (0.5 * labels + 0.5 * sigmoid(logits["xfit"], temperature)).astype(np.float32)
    raise ValueError(f"unknown arm {arm!r}")


def pooled_row(labels: np.ndarray, scores: np.ndarray) -> dict:
    """Pooled AP, the highest recall at precision >= 0.95 and max F1, and the model's threshold rule
    (`choose_threshold`: precision >= 0.95 if that keeps recall >= 0.5, else the max-F1 threshold) with its P/R."""
    t = choose_threshold(labels, scores, 0.95)
    m = binary_metrics(labels, scores, t)
    precision, recall, _ = precision_recall_curve(labels, scores)
    ok = precision >= 0.95
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return {
        "AP": round(float(average_precision_score(labels, scores)), 4),
        "R@P95": round(float(recall[ok].max()) if ok.any() else 0.0, 3),
        "maxF1": round(float(f1.max()), 3),
        "thr": round(float(t), 4),
        "P": round(float(m["precision"]), 3),
        "R": round(float(m["recall"]), 3),
    }


def fold_scores(out: Path) -> dict[str, dict[int, tuple[np.ndarray, np.ndarray]]]:
    """Model -> fold -> (test indices, scores) from the fold files of one --out."""
    by_model: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = {}
    for f in sorted(out.parent.glob(f"{out.stem}.fold*.npz")):
        z = np.load(f)
        for name in z.files:
            if name not in ("fold", "test_idx"):
                by_model.setdefault(name, {})[int(z["fold"])] = (z["test_idx"], z[name])
    return by_model


def summary(outs: list[Path], labels: np.ndarray) -> dict:
    """Pool the per-fold score files written so far -> one row per model; with several --out (student seeds), each
    model's scores are averaged over the runs that hold it (a seed ensemble), on the folds they all have."""
    runs = [fold_scores(o) for o in outs]
    by_model: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = {}
    for name in sorted({n for r in runs for n in r}):
        have = [r[name] for r in runs if name in r]
        ks = set.intersection(*(set(h) for h in have))
        by_model[name] = {k: (have[0][k][0], np.mean([h[k][1] for h in have], axis=0)) for k in ks}
    rows = {}
    for name, per_fold in by_model.items():
        ks = sorted(per_fold)
        idx = np.concatenate([per_fold[k][0] for k in ks])
        s = np.concatenate([per_fold[k][1] for k in ks])
        rows[name] = {
            "folds": ks,
            "n": len(idx),
            **pooled_row(labels[idx], s),
            "AP_by_fold": [round(float(average_precision_score(labels[i], p)), 3) for i, p in map(per_fold.get, ks)],
        }
    return rows


def main() -> int:
    """Run the folds (or --summary only); a JSON line per fold and a summary line."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--feature-cache", required=True)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--arms", default="hard,soft")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--folds", default="0,1,2,3,4")
    ap.add_argument("--seed", type=int, default=0, help="student seed (the split seed is always 0)")
    ap.add_argument("--out", default="/work/tmp-distill/results.jsonl")
    ap.add_argument("--summary", action="store_true", help="only pool the fold files already written")
    ap.add_argument("--also", action="append", default=[], help="with --summary: average with these --out runs")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    data = cached_folder(args.data, out.parent)
    folds = block_folds(data.labels, data.groups, N_FOLDS, SPLIT_SEED)
    if args.summary:
        print(json.dumps({"kind": "summary", **summary([out, *map(Path, args.also)], data.labels)}))
        return 0

    def log(m: str) -> None:
        print(m, file=sys.stderr, flush=True)

    recipe = pretrained_recipe(feature_cache=args.feature_cache)
    feats = data_features(data, recipe, log)
    student = replace(default_config()[0], epochs=args.epochs, threads=1)
    arms = args.arms.split(",")
    for k in [int(f) for f in args.folds.split(",")]:
        t0 = time.perf_counter()
        train, test = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
        head = fit_head(feats[train], data.labels[train], recipe)
        logits = {"in": head.logits(test_features(feats[train], recipe)).astype(np.float64)}
        if any(a.startswith("x") for a in arms):
            logits["xfit"] = crossfit_logits(feats, data, train, recipe)
        scores = {"teacher": sigmoid(head.logits(test_features(feats[test], recipe)))}
        y_in = data.labels[train]
        row = {
            "kind": "fold",
            "fold": k,
            "n_test": len(test),
            "pos_test": int(data.labels[test].sum()),
            "teacher_seconds": round(time.perf_counter() - t0, 1),
        }
        for name, z in logits.items():
            # how soft the targets are: mean |p - y|, the share of crops with p in (0.1, 0.9), their AP and logits
            p = sigmoid(z, args.temperature)
            row[f"{name}_mean_abs_gap"] = round(float(np.mean(np.abs(p - y_in))), 4)
            row[f"{name}_share_uncertain"] = round(float(np.mean((p > 0.1) & (p < 0.9))), 4)
            row[f"{name}_AP"] = round(float(average_precision_score(y_in, p)), 4)
            row[f"{name}_logit_pct_1_50_99"] = [round(float(v), 1) for v in np.percentile(z, [1, 50, 99])]
        log(f"fold {k}: teacher in {row['teacher_seconds']} s: {json.dumps(row)}")
        sub = data.subset(train)
        for arm in arms:
            t1 = time.perf_counter()
            log(f"  arm {arm}")
            state = fit_network(sub, student, args.seed, log, arm_targets(arm, y_in, logits, args.temperature))
            clf = Classifier([student.net], [state], resolution_m_per_px=student.resolution_m_per_px)
            scores[arm] = clf.predict_proba([data.chips[i] for i in test]).astype(np.float64)
            row[f"{arm}_seconds"] = round(time.perf_counter() - t1)
        for name, s in scores.items():
            row[f"AP_{name}"] = round(float(average_precision_score(data.labels[test], s)), 4)
        np.savez(out.parent / f"{out.stem}.fold{k}.npz", fold=k, test_idx=test, **scores)
        print(json.dumps(row), flush=True)
        with open(out, "a") as f:
            f.write(json.dumps({**row, "epochs": args.epochs, "seed": args.seed, "T": args.temperature}) + "\n")
    row = {"kind": "summary", "epochs": args.epochs, "seed": args.seed, **summary([out], data.labels)}
    print(json.dumps(row), flush=True)
    with open(out, "a") as f:
        f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
