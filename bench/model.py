"""Benchmark both recipes on one core: chips/s on 256 px chips, and predict_grid time per 256 px tile on the
mosaic the scan hands over (a unit of tiles plus the model's margin; fp32 and, for models with int8 ranges, the
int8 backbone of scan --int8), against a same-run baseline that
classifies one tile's cells as separate windows (predict_proba on one window per cell); peak RSS.

Usage: python bench/model.py [--chips 128] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np
import torch

from amberwatch.model import BUNDLED_CNN_PATH, BUNDLED_PATH, load

TILE_PX = 256
UNIT_TILES = 8  # a scan unit is 8 x 8 tiles


def best_grid_s(clf, mosaic: np.ndarray, reps: int) -> float:
    """Best of reps predict_grid times on the mosaic (after one warm-up call)."""
    clf.predict_grid(mosaic)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        clf.predict_grid(mosaic)
        best = min(best, time.perf_counter() - t0)
    return best


def bench_model(path, n_chips: int, reps: int, rng: np.random.Generator) -> dict:
    """Figures of one model file."""
    clf = load(path)
    chips = [rng.integers(0, 256, (TILE_PX, TILE_PX, 3), dtype=np.uint8) for _ in range(32)]
    clf.predict_proba(chips[:2])  # warm-up
    done, t0 = 0, time.perf_counter()
    while done < n_chips:
        clf.predict_proba(chips)
        done += len(chips)
    chips_per_s = done / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for c in chips[:16]:
        clf.predict_proba([c])
    single_chips_per_s = 16 / (time.perf_counter() - t0)

    b = min(clf.block_tiles, UNIT_TILES)
    margin = clf.context_px
    side = b * TILE_PX + 2 * margin
    mosaic = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    grid_ms = best_grid_s(clf, mosaic, reps) * 1000 / (b * b)
    int8_ms = None
    if getattr(clf, "int8", None) is not None:  # the same mosaic through the int8 backbone (scan --int8)
        clf.set_int8(True)
        int8_ms = best_grid_s(clf, mosaic, reps) * 1000 / (b * b)
        clf.set_int8(False)

    # Baseline: one window of context (2 * margin px wide) around every cell of one tile, classified separately.
    cells = TILE_PX // clf.cell_px
    step = max(1, cells // 8)  # a sample of the cells, scaled up to all of them
    windows = [
        mosaic[
            margin + r * clf.cell_px + clf.cell_px // 2 - margin : margin + r * clf.cell_px + clf.cell_px // 2 + margin,
            margin + c * clf.cell_px + clf.cell_px // 2 - margin : margin + c * clf.cell_px + clf.cell_px // 2 + margin,
        ]
        for r in range(0, cells, step)
        for c in range(0, cells, step)
    ]
    t0 = time.perf_counter()
    clf.predict_proba(windows)
    window_ms = (time.perf_counter() - t0) * 1000 * (cells * cells) / len(windows)
    return {
        "recipe": clf.kind,
        "file": str(path),
        "chips_per_s_per_core_batched_256px": round(chips_per_s, 1),
        "chips_per_s_per_core_one_by_one_256px": round(single_chips_per_s, 1),
        "predict_grid_mosaic_px": side,
        "tiles_per_mosaic": b * b,
        "predict_grid_ms_per_tile": round(grid_ms, 2),
        "tiles_per_s_per_core": round(1000 / grid_ms, 1),
        "baseline_separate_windows_ms_per_tile": round(window_ms, 1),
        "speedup_grid_vs_windows": round(window_ms / grid_ms, 1),
        **(
            {
                "predict_grid_ms_per_tile_int8": round(int8_ms, 2),
                "tiles_per_s_per_core_int8": round(1000 / int8_ms, 1),
                "int8_speedup": round(grid_ms / int8_ms, 2),
            }
            if int8_ms
            else {}
        ),
    }


def main() -> int:
    """Run the benchmark for both recipes and print one JSON summary."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--chips", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    results = [bench_model(p, args.chips, args.reps, rng) for p in (BUNDLED_CNN_PATH, BUNDLED_PATH)]
    cnn, pre = results
    summary = {
        "threads": torch.get_num_threads(),
        "models": results,
        "pretrained_vs_cnn_grid_time_per_tile": round(
            pre["predict_grid_ms_per_tile"] / cnn["predict_grid_ms_per_tile"], 2
        ),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
