"""Rebuild the bundled default model from the Texty folders: block-grouped CV, threshold, train on all data.

Recipe `pretrained` (default, bundled model v2) extracts EfficientNet-Lite0 features once into a feature
cache (--feature-cache) and fits the head (a small MLP) in seconds; recipe `cnn` rebuilds the v1 CNN.

--triage builds the bundled triage model (bundled/triage.pt) for `scan --triage-zoom 17`: the same recipe on the
examples downsampled by 2 (what a z17 tile shows, 0.76 m per pixel) with windows of 7 cells, its threshold the
highest keeping block-CV recall >= --min-recall on the crops (0.8: crop recall understates a pit field's, which
spans several windows and keeps a ring of neighbours; at 0.97 the threshold is ~1e-6 and keeps every tile,
RESULTS.md round 14), its metadata recording role "triage" and zoom offset -1:

    python scripts/build_default_model.py --data ../shared/data/texty-amber \
        --boxes scripts/data/texty_tile_boxes.csv --feature-cache ~/.cache/amberwatch/texty-features.sqlite --triage
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from amberwatch.model.dataset import load_boxes, load_folder
from amberwatch.model.modelfile import BUNDLED_CNN_PATH, BUNDLED_PATH, BUNDLED_TRIAGE_PATH
from amberwatch.model.recipes import RECIPES, TRIAGE_METADATA, TRIAGE_MIN_RECALL, recipe_by_name, triage_recipe
from amberwatch.model.train import train_with_cv


def default_out(recipe: str, triage: bool) -> Path:
    """The bundled model file a build writes by default."""
    if triage:
        return BUNDLED_TRIAGE_PATH
    return BUNDLED_PATH if recipe == "pretrained" else BUNDLED_CNN_PATH


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, train, write the model file and print its metadata."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", required=True, help="folder with positive/ and negative/ (e.g. the Texty set)")
    ap.add_argument(
        "--boxes",
        help="also train on the crops of this boxes CSV (image paths relative to --data), "
        "e.g. scripts/data/texty_tile_boxes.csv",
    )
    ap.add_argument("--recipe", choices=RECIPES, default="pretrained")
    ap.add_argument("--out", default=None, help="model file to write (default: the bundled model of the recipe)")
    ap.add_argument(
        "--feature-cache",
        default="build-features.sqlite",
        help="SQLite feature cache of the pretrained recipe (a rebuild reuses it)",
    )
    ap.add_argument(
        "--release", type=int, default=None, help="bundled release recorded in the metadata (default: 5, or 1 for cnn)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--folds", type=int, default=5, help="block-grouped CV folds for the threshold (0: skip)")
    ap.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (quick builds)")
    ap.add_argument("--members", type=int, default=None, help="override the recipe's ensemble size")
    ap.add_argument("--workers", type=int, default=2, help="processes training networks in parallel (1 thread each)")
    ap.add_argument("--triage", action="store_true", help="build the z17 triage model (half resolution, recall first)")
    ap.add_argument(
        "--min-recall", type=float, default=TRIAGE_MIN_RECALL, help="the triage model's block-CV recall target on crops"
    )
    args = ap.parse_args(argv)
    config = recipe_by_name(args.recipe, epochs=args.epochs, members=args.members, feature_cache=args.feature_cache)
    if args.triage:
        config = triage_recipe(config)
        if config is None:
            ap.error("--triage builds a pretrained-recipe model (the CNN recipe has no triage model)")
    out = args.out or str(default_out(args.recipe, args.triage))
    data = load_folder(args.data)
    n_texty = len(data)
    if args.boxes:
        data = data.merged(load_boxes(args.boxes, args.data))
    texty_only = np.arange(len(data)) < n_texty  # box crops join training, never the CV score
    print(f"loaded {len(data)} chips: {data.counts()}", file=sys.stderr)
    clf, _ = train_with_cv(
        data,
        config,
        seed=args.seed,
        n_folds=args.folds,
        log=lambda m: print(m, file=sys.stderr),
        workers=args.workers,
        score_mask=texty_only,
        min_recall=args.min_recall if args.triage else None,
    )
    clf.version = "0"  # the registry's number for the bundled model
    clf.metadata["bundled_release"] = args.release or (1 if args.recipe == "cnn" or args.triage else 5)
    if args.triage:
        clf.metadata.update(TRIAGE_METADATA)
    clf.save(out)
    print(json.dumps({k: v for k, v in clf.metadata.items() if k not in ("train_config", "training_oof")}, indent=1))
    print(f"wrote {out} ({Path(out).stat().st_size / 1e6:.2f} MB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
