"""Benchmark the classifier on one core: chips/s on 256x256 RGB chips (decode-free preprocessing included),
predict_grid time on a 256 px tile + margin against a same-run baseline that classifies the tile's
cells as separate windows (predict_proba on one window per cell), and peak RSS.

Usage: python bench/model.py [--model FILE] [--chips 256] [--tiles 50]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np
import torch

from amberwatch.model import load


def main() -> int:
    """Run the benchmark and print a JSON summary."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="model file (default: bundled)")
    ap.add_argument("--chips", type=int, default=256)
    ap.add_argument("--tiles", type=int, default=50)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(1)
    clf = load(args.model)
    rng = np.random.default_rng(0)
    chips = [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(args.batch)]
    clf.predict_proba(chips[:2])  # warm-up
    done, t0 = 0, time.perf_counter()
    while done < args.chips:
        clf.predict_proba(chips)
        done += len(chips)
    chips_per_s = done / (time.perf_counter() - t0)
    single_t0 = time.perf_counter()
    for c in chips[:16]:
        clf.predict_proba([c])
    single_chips_per_s = 16 / (time.perf_counter() - single_t0)
    margin = clf.context_px
    side = 256 + 2 * margin
    mosaic = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    clf.predict_grid(mosaic)
    t0 = time.perf_counter()
    for _ in range(args.tiles):
        clf.predict_grid(mosaic)
    grid_ms = (time.perf_counter() - t0) / args.tiles * 1000
    # Baseline: one window of context (2 * margin px wide) around every cell of the tile, classified separately.
    cells = 256 // clf.cell_px
    half = margin
    windows = [
        mosaic[margin + r * clf.cell_px + clf.cell_px // 2 - half: margin + r * clf.cell_px + clf.cell_px // 2 + half,
               margin + c * clf.cell_px + clf.cell_px // 2 - half: margin + c * clf.cell_px + clf.cell_px // 2 + half]
        for r in range(cells) for c in range(cells)
    ]
    baseline_tiles = max(2, args.tiles // 10)
    t0 = time.perf_counter()
    for _ in range(baseline_tiles):
        clf.predict_proba(windows)
    window_ms = (time.perf_counter() - t0) / baseline_tiles * 1000
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "model_version": clf.version,
        "ensemble_members": len(clf.state_dicts),
        "threads": torch.get_num_threads(),
        "chips_per_s_batched_256px": round(chips_per_s, 1),
        "chips_per_s_one_by_one_256px": round(single_chips_per_s, 1),
        "predict_grid_mosaic_px": side,
        "predict_grid_ms_per_tile": round(grid_ms, 2),
        "tiles_per_s_per_core": round(1000 / grid_ms, 1),
        "baseline_separate_windows_ms_per_tile": round(window_ms, 2),
        "speedup_grid_vs_windows": round(window_ms / grid_ms, 2),
        "peak_rss_mb": round(peak_rss_mb, 1),
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
