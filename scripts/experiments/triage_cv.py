"""Triage model levers on block CV at half resolution, scored per crop and per pit field (RESULTS round 16).

Features come from the feature cache (scale 0.5, the triage recipe's; `--scale 0.25` for a z16 triage, round 22,
whose features the first run computes and caches), so each variant only trains heads: 5 folds x
5 split seeds grouped by 0.1-degree block on the 881 Texty crops (the 36 tile-box crops join every training part,
never scored), out-of-fold scores pooled. A pit field is a source image (LAT_LON of the file name) with positive
crops: it is found at a threshold when any of its positive crops reaches it.

    PYTHONPATH=src python scripts/experiments/triage_cv.py --data ../shared/data/texty-amber \
        --boxes scripts/data/texty_tile_boxes.csv --feature-cache ~/.cache/amberwatch/texty-features.sqlite \
        --variant shipped --variant linear
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace

import numpy as np

from amberwatch.model.dataset import load_boxes, load_folder
from amberwatch.model.head import MlpSettings, blend_heads, fit_linear, fit_mlp_parts
from amberwatch.model.metrics import field_recall_threshold, field_scores, recall_threshold
from amberwatch.model.pretrained import _sigmoid, data_features, feature_columns
from amberwatch.model.recipes import pretrained_recipe, triage_recipe
from amberwatch.model.train import scored_folds

SPLIT_SEEDS = (0, 1, 2, 3, 4)


def variants() -> dict[str, dict]:
    """Named head variants: MLP settings, recipe fields, the positives' weight factor, training views."""
    mlp = MlpSettings()
    return {
        "shipped": {},
        "pos_weight_0.5": {"pos_factor": 0.5},
        "pos_weight_2": {"pos_factor": 2.0},
        "wd_0.1": {"mlp": replace(mlp, weight_decay=0.1)},
        "dropout_0.5": {"mlp": replace(mlp, dropout=0.5)},
        "epochs_10": {"mlp": replace(mlp, epochs=10)},
        "epochs_40": {"mlp": replace(mlp, epochs=40)},
        "hidden_16": {"mlp": replace(mlp, hidden=16)},
        "single_mlp": {"recipe": {"wide_std_stages": ()}},  # one MLP on every cached feature, no blend
        "wide_only": {"recipe": {"wide_weight": 1.0}},
        "dihedral_views_only": {"views": 8},
        "linear_C0.1": {"recipe": {"head": "linear", "wide_std_stages": ()}},
        "linear_C0.01": {"recipe": {"head": "linear", "wide_std_stages": (), "C": 0.01}},
        "linear_C1": {"recipe": {"head": "linear", "wide_std_stages": (), "C": 1.0}},
    }


def fit_variant(x: np.ndarray, y: np.ndarray, recipe, v: dict):
    """A head of the variant on (N, views, F) features -> a function of (M, F) features giving logits."""
    x = x[:, : v.get("views", x.shape[1])]
    rows, labels = x.reshape(-1, x.shape[-1]), np.repeat(y, x.shape[1])
    weights = np.where(labels == 1, v["pos_factor"], 1.0) if "pos_factor" in v else None
    if recipe.head == "linear":
        return fit_linear(rows, labels, recipe.C, weights).logits
    parts, w = [np.arange(rows.shape[1])], [1.0]
    if recipe.wide_std_stages and recipe.wide_weight < 1:
        parts = [feature_columns(recipe.std_stages, recipe.feature_std_stages), *parts]
        w = [1 - recipe.wide_weight, recipe.wide_weight]
    heads = fit_mlp_parts(rows, labels, parts, v.get("mlp", MlpSettings()), weights=weights)
    return blend_heads(list(zip(heads, parts)), w, rows.shape[1]).logits


def field_keys(names: list[str], splits: int) -> list[str]:
    """A field key per scored crop of every pooled split: the split, then LAT_LON of the source image."""
    keys = ["_".join(n.split("_")[:2]) for n in names]
    return [f"{s}:{k}" for s in range(splits) for k in keys]


def metrics_at(y: np.ndarray, p: np.ndarray, fields: list[str], t: float) -> dict:
    """Crop recall/precision/false-alarm rate and field recall/precision at threshold t (one split's scores)."""
    fields = ["_".join(n.split("_")[:2]) for n in fields]
    flagged = p >= t
    tp, fp = int((flagged & (y == 1)).sum()), int((flagged & (y == 0)).sum())
    pos_fields = {f for f, lab in zip(fields, y) if lab == 1}
    hot_fields = {f for f, hot in zip(fields, flagged) if hot}
    found = {f for f, lab, hot in zip(fields, y, flagged) if lab == 1 and hot}
    return {
        "crop_recall": tp / max(1, int(y.sum())),
        "crop_precision": tp / max(1, tp + fp),
        "neg_flagged": fp / max(1, int((y == 0).sum())),
        "field_recall": len(found) / max(1, len(pos_fields)),
        "field_precision": len(hot_fields & pos_fields) / max(1, len(hot_fields)),
    }


def evaluate(name: str, oofs: list[np.ndarray], y: np.ndarray, fields: list[str]) -> dict:
    """Pooled AP and the metrics at the crop-recall-0.8 and field-recall-0.97/0.95 thresholds."""
    from sklearn.metrics import average_precision_score

    pooled_y, pooled_p = np.concatenate([y] * len(oofs)), np.concatenate(oofs)
    field_ids = field_keys(fields, len(oofs))
    rules = {
        "crop_r0.80": recall_threshold(pooled_y, pooled_p, 0.8),
        "field_r0.97": field_recall_threshold(pooled_y, pooled_p, field_ids, 0.97),
        "field_r0.95": field_recall_threshold(pooled_y, pooled_p, field_ids, 0.95),
        "field_r0.85": field_recall_threshold(pooled_y, pooled_p, field_ids, 0.85),
        "field_r0.80": field_recall_threshold(pooled_y, pooled_p, field_ids, 0.80),
    }
    row = {"variant": name, "AP": round(float(average_precision_score(pooled_y, pooled_p)), 4)}
    row["AP_by_seed"] = [round(float(average_precision_score(y, o)), 3) for o in oofs]
    fs = field_scores(pooled_y, pooled_p, field_ids)
    row["field_AP"] = round(float(average_precision_score(fs[1], fs[0])), 4)
    for rule, t in rules.items():
        per_seed = [metrics_at(y, o, fields, t) for o in oofs]
        row[rule] = {"t": float(f"{t:.3g}"), **{k: round(np.mean([m[k] for m in per_seed]), 3) for k in per_seed[0]}}
    for t in (0.011, 0.03, 0.1, 0.3):
        per_seed = [metrics_at(y, o, fields, t) for o in oofs]
        row[f"at_{t}"] = {k: round(np.mean([m[k] for m in per_seed]), 3) for k in per_seed[0]}
    return row


def main() -> int:
    """Run the named variants and print a JSON line each (also appended to --out)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--boxes", required=True)
    ap.add_argument("--feature-cache", required=True)
    ap.add_argument("--variant", action="append", choices=sorted(variants()), required=True)
    ap.add_argument("--out", default="/tmp/triage_cv/results.jsonl")
    ap.add_argument("--scale", type=float, default=None, help="examples' scale (default the triage recipe's, 0.5)")
    args = ap.parse_args()
    data = load_folder(args.data)
    n_texty = len(data)
    data = data.merged(load_boxes(args.boxes, args.data))
    scored = np.arange(len(data)) < n_texty
    base = triage_recipe(pretrained_recipe(feature_cache=args.feature_cache))
    base = base if args.scale is None else replace(base, scale=args.scale)
    feats = data_features(data, base)
    fold_sets = [scored_folds(data, scored, 5, s) for s in SPLIT_SEEDS]
    y, fields = data.labels[scored], [n.split("/")[-1] for n, ok in zip(data.names, scored) if ok]
    for name in args.variant:
        v = variants()[name]
        recipe = replace(base, **v.get("recipe", {}))
        t0 = time.perf_counter()
        oofs = []
        for folds in fold_sets:
            oof = np.zeros(len(data))
            for k in range(5):
                train, test = folds != k, folds == k
                logits = fit_variant(feats[train], data.labels[train], recipe, v)
                oof[test] = _sigmoid(logits(feats[test][:, 0]))
            oofs.append(oof[scored])
        np.save(f"{args.out}.{name}.scale{base.scale:g}.npy", np.stack(oofs))
        row = {"scale": base.scale, **evaluate(name, oofs, y, fields)}
        row["seconds"] = round(time.perf_counter() - t0)
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
