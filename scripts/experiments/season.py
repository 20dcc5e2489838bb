"""Season-transfer check: train without the Oct 2015 positives (and their blocks), test on them.

Block CV cannot show colour/season over-fitting because every fold's positives share the same 3 dates;
here the test positives come from a season the training positives never show. Negatives of the test
come from one block-fold that is also removed from training.
Usage: python scripts/experiments/season.py --variant NAME [--seed S]
"""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

import numpy as np

from amberwatch.model.dataset import load_boxes
from amberwatch.model.metrics import binary_metrics
from amberwatch.model.train import block_folds, fit, member_configs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cv import report_row, variants


def season_split(data) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(October positives, test mask, train mask): the October 2015 positives and one held-out fold's negatives
    outside their blocks are the test; training drops the October blocks and that fold."""
    is_oct = np.array(["_Oct_2015_" in n for n in data.names]) & (data.labels == 1)
    oct_blocks = {g for g, o in zip(data.groups, is_oct) if o}
    folds = block_folds(data.labels, data.groups, 5, 0)
    in_oct_block = np.array([g in oct_blocks for g in data.groups])
    test = is_oct | ((data.labels == 0) & (folds == 0) & ~in_oct_block)
    train = ~test & ~in_oct_block & (folds != 0)
    return is_oct, test, train


def main() -> int:
    """Train one variant on the non-October data and score the October positives + held-out negatives."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="/tmp/amber_cv/season.jsonl")
    ap.add_argument("--boxes", help="boxes CSV whose crops join the training data")
    ap.add_argument("--images", help="folder the boxes CSV's image paths are relative to")
    args = ap.parse_args()
    data = pickle.loads((Path(args.out).parent / "data.pkl").read_bytes())
    is_oct, test, train = season_split(data)
    train_data = data.subset(np.flatnonzero(train))
    if args.boxes:
        train_data = train_data.merged(load_boxes(args.boxes, args.images))
    clf = fit(train_data, member_configs(variants()[args.variant]), seed=args.seed, workers=2)
    idx = np.flatnonzero(test)
    p = clf.predict_proba([data.chips[i] for i in idx])
    np.save(Path(args.out).parent / f"season_{args.variant}{'_tiles' if args.boxes else ''}_s{args.seed}.npy", p)
    m = binary_metrics(data.labels[idx], p, 0.5)
    row = {
        "variant": args.variant + ("+tiles" if args.boxes else ""),
        "seed": args.seed,
        "n_train": int(train.sum()),
        "test_pos": int(is_oct.sum()),
        "test_neg": int(len(idx) - is_oct.sum()),
        "AP": m["average_precision"],
        "F1@0.5": m["f1"],
        "R@0.5": m["recall"],
        "P@0.5": m["precision"],
    }
    report_row(row, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
