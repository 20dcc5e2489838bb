"""Score averages of saved out-of-fold predictions (seed ensembles, CNN+GBM blends).

Usage: python scripts/experiments/combine.py OOF.npy [OOF.npy ...]
"""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import numpy as np

from amberwatch.model.metrics import binary_metrics, choose_threshold


def main() -> int:
    """Average the given OOF arrays and print metrics."""
    files = [Path(f) for f in sys.argv[1:]]
    data = pickle.loads((files[0].parent / "data.pkl").read_bytes())
    oof = np.mean([np.load(f) for f in files], axis=0)
    thr = choose_threshold(data.labels, oof, 0.95)
    m, m05 = binary_metrics(data.labels, oof, thr), binary_metrics(data.labels, oof, 0.5)
    f1s = [binary_metrics(data.labels, oof, t)["f1"] for t in np.unique(oof)]
    print(
        json.dumps(
            {
                "combined": [f.stem for f in files],
                "AP": m["average_precision"],
                "thr": m["threshold"],
                "P": m["precision"],
                "R": m["recall"],
                "F1": m["f1"],
                "F1@0.5": m05["f1"],
                "maxF1": max(f1s),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
