"""Measure a pretrained model's int8 calibration again with this amberwatch's quantization, keeping its ranges.

The head, threshold and ranges stay as they are; the int8 logit correction (a ridge row fitted on the scan windows
of a mosaic of the model's calibration images, the lowest-sha256 training chips), the check chips and their recorded
mean |int8 - fp32| logit after the correction are measured again.
Run it after the quantization changes (backbone_onnx.QUANTIZATION), e.g. on the bundled model:

    python scripts/recalibrate_int8.py --data ../shared/data/texty-amber --boxes scripts/data/texty_tile_boxes.csv
"""

from __future__ import annotations

import argparse
import sys

from amberwatch.model.dataset import load_boxes, load_folder
from amberwatch.model.modelfile import BUNDLED_PATH, load
from amberwatch.model.pretrained import calibration_images, calibration_passes


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, recalibrate, write the model file and print the calibration's figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="folder with positive/ and negative/ the model was trained on")
    ap.add_argument("--boxes", help="the boxes CSV it was also trained on (image paths relative to --data)")
    ap.add_argument("--model", default=str(BUNDLED_PATH), help="model file to recalibrate (default: the bundled one)")
    ap.add_argument("--out", default=None, help="where to write it (default: over --model)")
    args = ap.parse_args(argv)
    clf = load(args.model)
    if getattr(clf, "int8", None) is None:
        print(f"{args.model}: no int8 calibration to measure again", file=sys.stderr)
        return 1
    data = load_folder(args.data)
    if args.boxes:
        data = data.merged(load_boxes(args.boxes, args.data))
    images = calibration_images(data, clf.recipe)
    passes = calibration_passes(images, clf.recipe, clf.int8.ranges)
    before, clf.int8 = clf.int8, passes.calibration(clf.head)
    clf.save(args.out or args.model)
    rows = "" if clf.int8.logit_weights is None else f", a correction row on {len(passes.windows_int8)} windows"
    print(
        f"{len(images)} calibration chips: logit shift {before.logit_shift:+.3f} ({before.quantization}) -> "
        f"{clf.int8.logit_shift:+.3f} ({clf.int8.quantization}{rows}); check: {len(clf.int8.check_images)} chips, "
        f"mean |int8 - fp32| logit {before.check_dlogit or float('nan'):.3f} -> {clf.int8.check_dlogit:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
