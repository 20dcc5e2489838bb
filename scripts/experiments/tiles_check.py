"""Summer check: train a variant on every Texty crop, score the crops cut from tiles/ (boxes CSV; never trained on).

The tiles are summer imagery while the positives are from March and October, so this is a second,
tiny season-transfer check (6 positives, 30 negatives). Usage:
python scripts/experiments/tiles_check.py --variant NAME --boxes scripts/data/texty_tile_boxes.csv --images DIR
"""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

import numpy as np

from amberwatch.model.dataset import load_boxes
from amberwatch.model.metrics import binary_metrics
from amberwatch.model.train import fit, member_configs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cv import report_row, variants


def main() -> int:
    """Train on all crops, print AP and counts on the tile crops."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--boxes", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--out", default="/tmp/amber_cv/tiles_check.jsonl")
    args = ap.parse_args()
    data = pickle.loads((Path(args.out).parent / "data.pkl").read_bytes())
    test = load_boxes(args.boxes, args.images)
    clf = fit(data, member_configs(variants()[args.variant]), seed=args.seed, workers=2)
    p = clf.predict_proba(test.chips)
    m = binary_metrics(test.labels, p, 0.5)
    row = {
        "variant": args.variant,
        "seed": args.seed,
        "AP": round(m["average_precision"], 3),
        "pos_scores": [round(float(v), 2) for v in np.sort(p[test.labels == 1])],
        "neg_over_0.5": int((p[test.labels == 0] >= 0.5).sum()),
        "neg_max": round(float(p[test.labels == 0].max()), 2),
    }
    report_row(row, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
