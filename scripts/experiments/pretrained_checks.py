"""Checks of recipe `pretrained` on the Texty set: block CV by split seed and fold, season transfer, tiles check.

- Block CV: 5 folds by 0.1-degree block on the 881 Texty crops alone, split seeds 0-4; the tile boxes (if given)
  join every fold's training part and are never scored.
- Season transfer (as season.py): train without the Oct 2015 positives and their blocks (and without one
  held-out block fold), test on the October positives + that fold's negatives (chance AP 0.17).
- Tiles check: a head trained on the Texty crops alone scores the hand-drawn boxes of the 4 whole images.
Features come from the recipe's feature cache, so after the first run every check takes seconds.
Usage: python scripts/experiments/pretrained_checks.py --data DIR [--boxes CSV] [--feature-cache FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from amberwatch.model.dataset import load_boxes, load_folder
from amberwatch.model.head import Head
from amberwatch.model.metrics import binary_metrics, choose_threshold
from amberwatch.model.pretrained import PretrainedRecipe, data_features, fit_head, test_features
from amberwatch.model.recipes import pretrained_recipe
from amberwatch.model.train import block_folds

sys.path.insert(0, str(Path(__file__).resolve().parent))
from season import season_split


def scores(features: np.ndarray, recipe: PretrainedRecipe, head: Head) -> np.ndarray:
    """P(mining) of examples from their cached features."""
    return 1 / (1 + np.exp(-head.logits(test_features(features, recipe))))


def block_cv(feats, labels, groups, extra, recipe, seeds) -> dict:
    """Per split seed: AP, per-fold AP, and P/R/F1 at the pooled precision-0.95 threshold."""
    runs = []
    for seed in seeds:
        folds = block_folds(labels, groups, 5, seed)
        oof = np.zeros(len(labels))
        fold_ap = []
        for k in range(5):
            train, test = folds != k, folds == k
            x, y = feats[train], labels[train]
            if extra is not None:
                x, y = np.concatenate([x, extra[0]]), np.concatenate([y, extra[1]])
            oof[test] = scores(feats[test], recipe, fit_head(x, y, recipe))
            fold_ap.append(binary_metrics(labels[test], oof[test], 0.5)["average_precision"])
        runs.append((oof, fold_ap))
    pooled_y = np.concatenate([labels] * len(runs))
    pooled = np.concatenate([o for o, _ in runs])
    t = choose_threshold(pooled_y, pooled, 0.95)
    at_t = binary_metrics(pooled_y, pooled, t)
    aps = [binary_metrics(labels, o, t)["average_precision"] for o, _ in runs]
    return {
        "AP_mean": round(float(np.mean(aps)), 3),
        "AP_std": round(float(np.std(aps)), 3),
        "AP_by_seed": aps,
        "fold_AP_by_seed": [[round(a, 2) for a in f] for _, f in runs],
        "threshold": round(t, 3),
        "P": at_t["precision"],
        "R": at_t["recall"],
        "F1": at_t["f1"],
    }


def season(feats, data, recipe) -> dict:
    """Train on the March positives, test on the October ones (protocol of season.py)."""
    is_oct, test, train = season_split(data)
    head = fit_head(feats[train], data.labels[train], recipe)
    m = binary_metrics(data.labels[test], scores(feats[test], recipe, head), 0.5)
    return {"AP": m["average_precision"], "test_pos": int(is_oct.sum()), "test_neg": int(test.sum() - is_oct.sum())}


def main() -> int:
    """Run the checks for the default recipe and a few variants; print one JSON line each."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--boxes")
    ap.add_argument("--feature-cache", default="build-features.sqlite")
    args = ap.parse_args()
    recipe = pretrained_recipe(feature_cache=args.feature_cache)
    data = load_folder(args.data)
    feats = data_features(data, recipe, log=lambda m: print(m, file=sys.stderr))
    extra = None
    if args.boxes:
        boxes = load_boxes(args.boxes, args.data)
        extra = (data_features(boxes, recipe), boxes.labels)
    variants = {
        f"pretrained ({recipe.head} head)": recipe,
        "pretrained (linear head)": pretrained_recipe(feature_cache=args.feature_cache, head="linear"),
        f"pretrained ({recipe.head} head) + tta": replace(recipe, tta=True),
    }
    for name, r in variants.items():
        for with_boxes in [False, True] if extra else [False]:
            row = {
                "recipe": name,
                "tile_boxes_in_training": with_boxes,
                **block_cv(feats, data.labels, data.groups, extra if with_boxes else None, r, range(5)),
            }
            print(json.dumps(row))
        no_jitter = feats[:, :8]
        print(
            json.dumps(
                {
                    "recipe": name,
                    "season": season(feats, data, r),
                    "season_without_jitter_rows": season(no_jitter, data, r),
                }
            )
        )
    if extra:
        p = scores(extra[0], recipe, fit_head(feats, data.labels, recipe))
        m = binary_metrics(extra[1], p, 0.5)
        order = np.argsort(-p)
        print(
            json.dumps(
                {
                    "tiles_check": {
                        "AP": m["average_precision"],
                        "n_pos": int(extra[1].sum()),
                        "n_neg": int(len(p) - extra[1].sum()),
                        "pits_ranked_above_every_field": bool(extra[1][order][: int(extra[1].sum())].all()),
                    }
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
