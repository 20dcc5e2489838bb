"""Comparison baseline: hand-crafted texture (+ optional colour) features with LightGBM, same block-grouped folds.

Usage: python scripts/experiments/texture_gbm.py --data DIR [--colour]
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from amberwatch.model.dataset import load_folder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cv import report_row

from amberwatch.model.metrics import binary_metrics, choose_threshold
from amberwatch.model.train import block_folds, downsample_chip


def texture_features(chip: np.ndarray, colour: bool) -> np.ndarray:
    """Brightness/contrast-normalised texture statistics at 0.76 m/px (plus chromaticity stats if colour)."""
    rgb = downsample_chip(chip, 2).astype(np.float32)
    gray = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    g = (gray - gray.mean()) / (gray.std() + 1e-3)
    feats: list[float] = []
    for sigma in (1, 2, 3, 5, 8):
        log = ndi.gaussian_laplace(g, sigma) * sigma**2
        feats += [np.abs(log).mean(), log.std(), *np.percentile(log, [1, 5, 95, 99])]
    gx, gy = ndi.sobel(g, 0), ndi.sobel(g, 1)
    mag = np.hypot(gx, gy)
    feats += [mag.mean(), mag.std(), *np.percentile(mag, [50, 90, 99])]
    for sigma in (2, 5):
        jxx, jyy, jxy = (ndi.gaussian_filter(a, sigma) for a in (gx * gx, gy * gy, gx * gy))
        coherence = np.sqrt((jxx - jyy) ** 2 + 4 * jxy**2) / (jxx + jyy + 1e-6)
        feats += [coherence.mean(), np.percentile(coherence, 90)]
    for size in (5, 11, 21):
        m = ndi.uniform_filter(g, size)
        local_std = np.sqrt(np.maximum(ndi.uniform_filter(g * g, size) - m * m, 0))
        feats += [local_std.mean(), *np.percentile(local_std, [10, 50, 90])]
    feats += [(g > 1.5).mean(), (g > 2.5).mean(), (g < -1.5).mean(), float(((g - g.mean()) ** 3).mean())]
    if colour:
        s = rgb.sum(axis=2) + 1
        for c in range(3):
            r = rgb[:, :, c] / s
            feats += [r.mean(), r.std()]
        feats += [gray.mean(), gray.std()]
    return np.asarray(feats, np.float32)


def main() -> int:
    """Extract features, 5-fold block-grouped CV with LightGBM, print metrics."""
    import lightgbm as lgb

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--colour", action="store_true")
    ap.add_argument("--out", default="/tmp/amber_cv/results.jsonl")
    args = ap.parse_args()
    cache = Path(args.out).parent / "data.pkl"
    data = pickle.loads(cache.read_bytes()) if cache.exists() else load_folder(args.data)
    t0 = time.perf_counter()
    X = np.stack([texture_features(c, args.colour) for c in data.chips])
    feat_s = (time.perf_counter() - t0) / len(data)
    folds = block_folds(data.labels, data.groups, 5, 0)
    oof = np.zeros(len(data), np.float32)
    for k in range(5):
        tr, te = folds != k, folds == k
        gbm = lgb.LGBMClassifier(
            n_estimators=300,
            learning_rate=0.03,
            num_leaves=8,
            min_child_samples=10,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=0.7,
            reg_lambda=1.0,
            n_jobs=1,
            verbose=-1,
            random_state=0,
        )
        gbm.fit(X[tr], data.labels[tr])
        oof[te] = gbm.predict_proba(X[te])[:, 1]
    np.save(Path(args.out).parent / f"oof_gbm{'_colour' if args.colour else ''}.npy", oof)
    thr = choose_threshold(data.labels, oof, 0.95)
    m, m05 = binary_metrics(data.labels, oof, thr), binary_metrics(data.labels, oof, 0.5)
    row = {
        "variant": "texture_gbm" + ("+colour" if args.colour else ""),
        "ms_per_chip_features": round(feat_s * 1000, 1),
        "AP": m["average_precision"],
        "thr": m["threshold"],
        "P": m["precision"],
        "R": m["recall"],
        "F1": m["f1"],
        "F1@0.5": m05["f1"],
        "P@0.5": m05["precision"],
        "R@0.5": m05["recall"],
    }
    report_row(row, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
