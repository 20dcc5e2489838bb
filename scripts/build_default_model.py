"""Rebuild the bundled default model from the Texty folders: block-grouped CV, threshold, train on all data."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from amberwatch.model.classifier import BUNDLED_PATH
from amberwatch.model.dataset import load_boxes, load_folder
from amberwatch.model.recipes import default_config
from amberwatch.model.train import train_with_cv


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, train, write the model file and print its metadata."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", required=True, help="folder with positive/ and negative/ (e.g. the Texty set)")
    ap.add_argument("--boxes", help="also train on the crops of this boxes CSV (image paths relative to --data), "
                                    "e.g. scripts/data/texty_tile_boxes.csv")
    ap.add_argument("--out", default=str(BUNDLED_PATH), help="model file to write (default: the bundled model)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--folds", type=int, default=5, help="block-grouped CV folds for the threshold (0: skip)")
    ap.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (quick builds)")
    ap.add_argument("--members", type=int, default=None, help="override the recipe's ensemble size")
    ap.add_argument("--workers", type=int, default=2, help="processes training networks in parallel (1 thread each)")
    args = ap.parse_args(argv)
    config = default_config(epochs=args.epochs, members=args.members)
    data = load_folder(args.data)
    if args.boxes:
        data = data.merged(load_boxes(args.boxes, args.data))
    print(f"loaded {len(data)} chips: {data.counts()}", file=sys.stderr)
    clf, _ = train_with_cv(data, config, seed=args.seed, n_folds=args.folds,
                          log=lambda m: print(m, file=sys.stderr), workers=args.workers)
    clf.version = "0"
    clf.save(args.out)
    print(json.dumps({k: v for k, v in clf.metadata.items() if k != "train_config"}, indent=1))
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1e6:.2f} MB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
