"""Block CV that keeps every fold's trained networks, then scores inference variants without retraining.

Usage: python scripts/experiments/cv_states.py --variant NAME [--workers 2]   (trains, saves states)
       python scripts/experiments/cv_states.py --variant NAME --score-only     (re-scores saved states)
Inference variants: 'mean' (global average pool, the shipped chip score), 'tta4' (mean over the 4 flips),
'maxwin' (max over the per-cell window scores of predict_grid inside the chip).
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import torch

from amberwatch.model.classifier import Classifier
from amberwatch.model.dataset import load_boxes
from amberwatch.model.metrics import binary_metrics, choose_threshold
from amberwatch.model.train import block_folds, member_configs, train_networks

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cv import report_row, variants


def chip_scores(clf: Classifier, chips: list[np.ndarray], how: str) -> np.ndarray:
    """P(mining) per chip under one inference variant."""
    if how == "mean":
        return clf.predict_proba(chips)
    if how == "tta4":
        flips = [lambda c: c, lambda c: c[:, ::-1], lambda c: c[::-1], lambda c: c[::-1, ::-1]]
        return np.mean([clf.predict_proba([np.ascontiguousarray(f(c)) for c in chips]) for f in flips], axis=0)
    if how == "maxwin":
        out = []
        cell = clf.cell_px
        for c in chips:
            h, w = max(c.shape[0] // cell, 1) * cell, max(c.shape[1] // cell, 1) * cell
            if c.shape[0] < cell or c.shape[1] < cell:
                out.append(float(clf.predict_proba([c])[0]))
                continue
            out.append(float(clf.predict_grid(c[:h, :w]).max()))
        return np.asarray(out, dtype=np.float32)
    raise ValueError(how)


def main() -> int:
    """Train (or load) fold networks of one variant and print metrics per inference variant."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--dir", default="/tmp/amber_cv")
    ap.add_argument("--score-only", action="store_true")
    ap.add_argument("--how", default="mean,tta4,maxwin")
    ap.add_argument("--boxes", help="boxes CSV whose crops join every fold's training part (never scored)")
    ap.add_argument("--images", help="folder the boxes CSV's image paths are relative to")
    ap.add_argument("--tag", default="", help="suffix of the saved files (e.g. '_tiles')")
    args = ap.parse_args()
    root = Path(args.dir)
    data = pickle.loads((root / "data.pkl").read_bytes())
    configs = member_configs(variants()[args.variant])
    folds = block_folds(data.labels, data.groups, 5, 0)
    n_scored = len(data)
    if args.boxes:
        extra = load_boxes(args.boxes, args.images)
        data = data.merged(extra)
        folds = np.concatenate([folds, np.full(len(extra), -1)])  # fold -1: in every training part
    name = f"{args.variant}{args.tag}"
    states_path = root / f"states_{name}_s{args.seed}.pt"
    t0 = time.perf_counter()
    if args.score_only:
        states = torch.load(states_path, weights_only=True)
    else:
        jobs = [(np.flatnonzero(folds != k), c, args.seed + m) for k in range(5) for m, c in enumerate(configs)]
        states = train_networks(data, jobs, args.workers)
        torch.save(states, states_path)
    minutes = round((time.perf_counter() - t0) / 60, 1)
    torch.set_num_threads(1)
    for how in args.how.split(","):
        oof = np.zeros(n_scored, dtype=np.float32)
        for k in range(5):
            idx = np.flatnonzero(folds[:n_scored] == k)
            clf = Classifier([c.net for c in configs], states[k * len(configs) : (k + 1) * len(configs)])
            oof[idx] = chip_scores(clf, [data.chips[i] for i in idx], how)
        np.save(root / f"oof_{name}_{how}_s{args.seed}.npy", oof)
        labels, folds_scored = data.labels[:n_scored], folds[:n_scored]
        thr = choose_threshold(labels, oof, 0.95)
        m = binary_metrics(labels, oof, thr)
        f1s = [binary_metrics(labels, oof, t)["f1"] for t in np.unique(oof)]
        per_fold = [
            round(binary_metrics(labels[folds_scored == k], oof[folds_scored == k], 0.5)["average_precision"], 2)
            for k in range(5)
        ]
        row = {
            "variant": name,
            "how": how,
            "seed": args.seed,
            "minutes": minutes,
            "AP": round(m["average_precision"], 4),
            "thr": round(m["threshold"], 3),
            "P": round(m["precision"], 3),
            "R": round(m["recall"], 3),
            "F1": round(m["f1"], 3),
            "maxF1": round(max(f1s), 3),
            "fold_AP": per_fold,
        }
        report_row(row, root / "states_results.jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
