"""The accurate model's recipe at a lower input scale (issue 25): block CV and the backbone's cost per tile.

Block CV as in rounds 9 and 16: the shipped `pretrained_recipe` (MLP blend head, 8 + 4 views) with only its
`scale` changed, 5 folds x 5 split seeds grouped by 0.1-degree block on the 881 Texty crops (the 36 tile-box crops
join every training part, never scored), out-of-fold scores pooled; heads are trained by `pretrained.cross_validate`
and the threshold is the model's rule (`choose_threshold`: lowest with pooled precision >= 0.95). Field recall at
that threshold: a source image (LAT_LON) with positive crops is found when any of them reaches it (`triage_cv`).
Features come from --feature-cache (the first run of a scale computes them: 917 crops x 12 views).

--bench times the bundled model's int8 backbone (ORT, one thread, uint8 pixels; its scale-1.0 int8 ranges, which do
not change the kernels) on a scan block frame at each scale: 8 x 8 tiles of `model_tile_px` (a 0.375 m/px z18 tile
resampled to the recipe's resolution) plus the margin of a 15-cell window, in the recipe's 800 px passes with a
32 px halo, real imagery (tiles/positive1.png rescaled); CPU ms per frame / 64, least of --repeat runs, scales
interleaved.

--model-dir also writes a model file per scale (trained on every crop, int8 calibrated, the CV threshold; its window
keeps the 15 cells' ground extent: 11 cells at 0.85 and 0.75) for `bench/scan_profile.py --model` (the warm scan's
CPU per tile end to end). --border changes the chips' pooling border, --mix-scale adds another scale's 12 views of
every crop to the training rows (scored on --scale's view 0). RESULTS.md: the input-scale round (issue 25).

    OMP_NUM_THREADS=1 PYTHONPATH=src:. python scripts/experiments/scale_cv.py --data ../shared/data/texty-amber \
        --boxes scripts/data/texty_tile_boxes.csv --feature-cache /work/tmp-scale/features.sqlite \
        --scale 1.0 --scale 0.75 --scale 0.85 --model-dir /work/tmp-scale/models --out /work/tmp-scale/results.jsonl
    OMP_NUM_THREADS=1 PYTHONPATH=src:. python scripts/experiments/scale_cv.py ... --scale 1.0 --scale 0.85 \
        --scale 0.75 --no-cv --bench --repeat 7
    OMP_NUM_THREADS=1 PYTHONPATH=src:. python bench/scan_profile.py --side 16 --workdir /work/tmp-scale/profile \
        --model /work/tmp-scale/models/scale0.75.pt
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
from sklearn.metrics import average_precision_score
from triage_cv import field_keys, metrics_at

from amberwatch.model.dataset import load_boxes, load_folder
from amberwatch.model.metrics import binary_metrics, choose_threshold, field_scores
from amberwatch.model.pretrained import cross_validate, data_features
from amberwatch.model.recipes import pretrained_recipe
from amberwatch.model.train import scored_folds, train_with_cv

SPLIT_SEEDS = (0, 1, 2, 3, 4)
Z18_M_PER_PX = 0.375  # a z18 tile at the Texty latitudes (~51° N)
BLOCK_TILES = 8


def cv_row(data, scored: np.ndarray, recipe, out: str) -> dict:
    """Block CV of the recipe: pooled AP, AP per split seed, the model's threshold and its metrics, field recall."""
    t0 = time.perf_counter()
    fold_sets = [scored_folds(data, scored, 5, s) for s in SPLIT_SEEDS]
    oofs = [o[scored] for o in cross_validate(data, recipe, fold_sets, workers=1)]
    np.save(f"{out}.scale{recipe.scale:g}.border{recipe.border_px}.npy", np.stack(oofs))
    y = data.labels[scored]
    names = [n.split("/")[-1] for n, ok in zip(data.names, scored) if ok]
    pooled_y, pooled_p = np.concatenate([y] * len(oofs)), np.concatenate(oofs)
    t = choose_threshold(pooled_y, pooled_p, 0.95)
    m = binary_metrics(pooled_y, pooled_p, t)
    per_seed = [metrics_at(y, o, names, t) for o in oofs]
    fs = field_scores(pooled_y, pooled_p, field_keys(names, len(oofs)))
    return {
        "scale": recipe.scale,
        "views": feats_views(data, recipe),
        "border_px": recipe.border_px,
        "AP": round(float(average_precision_score(pooled_y, pooled_p)), 4),
        "AP_by_seed": [round(float(average_precision_score(y, o)), 3) for o in oofs],
        "threshold": round(t, 4),
        "precision": m["precision"],
        "recall": m["recall"],
        "f1": m["f1"],
        "field_recall": round(float(np.mean([s["field_recall"] for s in per_seed])), 3),
        "field_AP": round(float(average_precision_score(fs[1], fs[0])), 4),
        "neg_flagged": round(float(np.mean([s["neg_flagged"] for s in per_seed])), 4),
        "seconds": round(time.perf_counter() - t0),
    }


def feats_views(data, recipe) -> int:
    """Training views per crop cross_validate used (12, or 24 with --mix-scale)."""
    return int(data_features(data, recipe).shape[1])


def build_model(data, scored: np.ndarray, recipe, threshold: float, path: str) -> None:
    """A model file of the recipe trained on every example (int8 calibrated, no CV) at the given CV threshold, for
    bench/scan_profile.py --model (a scan's cost end to end)."""
    clf, _ = train_with_cv(data, recipe, n_folds=0, score_mask=scored)
    clf.threshold = threshold
    clf.metadata["threshold"] = threshold
    clf.save(path)


def bench_backbone(scales: list[float], texty: str, repeat: int) -> list[dict]:
    """CPU ms of the int8 backbone per z18 tile of a block frame at each scale (see the module docstring)."""
    from PIL import Image

    from amberwatch.model.backbone_onnx import model_bytes
    from amberwatch.model.features import rescale
    from amberwatch.model.modelfile import load
    from amberwatch.scan.engine import model_tile_px

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from backbone_ops import run_passes, session, spans

    clf = load(None)
    sess = session(model_bytes(clf.backbone, clf.int8.ranges))
    image = np.asarray(Image.open(Path(texty) / "tiles" / "positive1.png").convert("RGB"))
    halo, chunk, cell = clf.recipe.halo_px, clf.recipe.chunk_px, clf.recipe.cell_px
    margin = -(-clf.context_px // cell) * cell
    frames = {}
    for s in scales:
        tile = model_tile_px(Z18_M_PER_PX, clf.recipe.example_resolution_m_per_px / s, cell)
        side = BLOCK_TILES * tile + 2 * margin
        small = rescale(image, s)
        reps = -(-side // min(small.shape[:2]))
        frames[s] = (tile, np.ascontiguousarray(np.tile(small, (reps, reps, 1))[:side, :side]))

    def run(frame: np.ndarray) -> None:
        run_passes(sess, frame, chunk, halo)

    times: dict[float, list[float]] = {s: [] for s in scales}
    for s in scales:
        run(frames[s][1])  # warm: the arena sized for these passes
    for _ in range(repeat):
        for s in scales:
            t = time.process_time()
            run(frames[s][1])
            times[s].append(time.process_time() - t)
    rows = []
    for s in scales:
        tile, frame = frames[s]
        ms = [t * 1e3 / BLOCK_TILES**2 for t in times[s]]
        rows.append(
            {
                "scale": s,
                "tile_px": tile,
                "frame_px": frame.shape[0],
                "passes": len(spans(frame.shape[0], chunk)) ** 2,
                "ms_per_tile": round(min(ms), 2),
                "runs_ms_per_tile": [round(v, 2) for v in ms],
            }
        )
    return rows


def main() -> int:
    """Block CV of each --scale, then (with --bench) the backbone's cost per tile; a JSON line each."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--boxes", required=True)
    ap.add_argument("--feature-cache", required=True)
    ap.add_argument("--scale", type=float, action="append", required=True)
    ap.add_argument("--border", type=int, default=None, help="chips' pooling border px (default the recipe's, 32)")
    ap.add_argument("--out", default="/tmp/scale_cv/results.jsonl")
    ap.add_argument("--no-cv", action="store_true", help="only the backbone bench")
    ap.add_argument("--bench", action="store_true", help="time the int8 backbone per tile at each scale")
    ap.add_argument(
        "--mix-scale",
        type=float,
        help="also train on this scale's 12 views of every crop (scale augmentation; scored on --scale's view 0)",
    )
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--model-dir", help="also write a model file per scale here (window scaled with the scale)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    rows = []
    if not args.no_cv:
        data = load_folder(args.data)
        n_texty = len(data)
        data = data.merged(load_boxes(args.boxes, args.data))
        scored = np.arange(len(data)) < n_texty
        base = pretrained_recipe(feature_cache=args.feature_cache)
        base = base if args.border is None else replace(base, border_px=args.border)
        for s in args.scale:
            recipe = replace(base, scale=s)
            if args.mix_scale:  # data_features keeps its result on data: the mixed views stand in for this scale's
                own, other = data_features(data, recipe), data_features(data, replace(base, scale=args.mix_scale))
                key = next(k for k, v in data.extra.items() if v is own)
                data.extra[key] = np.concatenate([own, other], axis=1)
            rows.append({"kind": "cv", **cv_row(data, scored, recipe, args.out)})
            print(json.dumps(rows[-1]), flush=True)
            if args.model_dir:  # the scored window keeps its ground extent: 15 cells at 1.0, 11 at 0.75 (3 mod 4)
                cells = round(base.window_cells * s / 4 - 0.75) * 4 + 3
                path = f"{args.model_dir}/scale{s:g}.pt"
                build_model(data, scored, replace(recipe, window_cells=cells), rows[-1]["threshold"], path)
                print(f"wrote {path} (window {cells} cells)", flush=True)
    if args.bench:
        for row in bench_backbone(args.scale, args.data, args.repeat):
            rows.append({"kind": "bench", **row})
            print(json.dumps(rows[-1]), flush=True)
    with open(args.out, "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
