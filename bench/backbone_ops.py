"""Where the scan's backbone spends its time in ONNX Runtime, one thread: per op kind of one pass, and per block frame
for several pass sizes. Run it under bench/avx2_only.py to see the AVX2 kernels (RESULTS.md round 13).

1. ``--side`` px pass of the bundled model's backbone (int8 unless --fp32) with ORT's profiler: ms per pass by
   op type and by kind of convolution (stem, depthwise, 1x1 expand, 1x1 project);
2. a scan block frame of real imagery (8 x 8 tiles + margin, 2,368 px) in passes of each --chunks size with the
   recipe's halo, as ``cell_maps`` cuts it: CPU ms per frame (least of --repeat runs, sizes interleaved).
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

TEXTY = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "texty-amber" / "tiles"


def session(data: bytes, profile_dir: str | None = None):
    """A one-thread ORT session as the scan makes it (optionally profiling into profile_dir)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if profile_dir:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(profile_dir) / "ort")
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def feed(sess, pixels: np.ndarray) -> dict:
    """HxWx3 uint8 as the session's input: uint8 NHWC pixels, or float NCHW."""
    name = sess.get_inputs()[0].name
    if name == "pixels":
        return {name: np.ascontiguousarray(pixels)[None]}
    return {name: np.ascontiguousarray(pixels.transpose(2, 0, 1), np.float32)[None]}


def op_breakdown(data: bytes, pixels: np.ndarray, runs: int) -> None:
    """Print ms per pass by op type and by convolution kind."""
    with tempfile.TemporaryDirectory() as tmp:
        sess = session(data, tmp)
        for _ in range(runs + 1):
            sess.run(None, feed(sess, pixels))
        events = json.loads(Path(sess.end_profiling()).read_text())
    by_op, by_kind = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by_op[e["args"]["op_name"]] += e["dur"]
            kind = next((k for k in ("stem", "depthwise", "expand", "project") if k in e["name"]), "other")
            by_kind[kind if e["args"]["op_name"] in ("QLinearConv", "Conv") else "other"] += e["dur"]
    total = sum(by_op.values())
    print(f"{pixels.shape[0]} px pass: {total / (runs + 1) / 1e3:.1f} ms of kernels")
    for name, counter in (("op", by_op), ("convolution", by_kind)):
        for key, us in counter.most_common():
            print(f"  {name:12s} {key:20s} {us / (runs + 1) / 1e3:8.2f} ms {us / total:6.1%}")


def spans(size_px: int, chunk_px: int) -> list[tuple[int, int]]:
    """cell_maps' passes along one side."""
    from amberwatch.model.pretrained import _spans

    return _spans(size_px, chunk_px)


def run_passes(sess, frame: np.ndarray, chunk_px: int, halo_px: int) -> None:
    """A square block frame through the backbone in passes of ~chunk_px with a halo_px halo, as cell_maps cuts it."""
    side = frame.shape[0]
    for y0, y1 in spans(side, chunk_px):
        for x0, x1 in spans(side, chunk_px):
            ya, yb = max(0, y0 - halo_px), min(side, y1 + halo_px)
            xa, xb = max(0, x0 - halo_px), min(side, x1 + halo_px)
            sess.run(None, feed(sess, frame[ya:yb, xa:xb]))


def frame_passes(data: bytes, frame: np.ndarray, chunks: list[int], halo_px: int, repeat: int) -> None:
    """Print CPU ms per frame for each pass size (least of repeat runs, sizes interleaved)."""
    sess = session(data)
    side = frame.shape[0]

    def run(chunk: int) -> None:
        run_passes(sess, frame, chunk, halo_px)

    times: dict[int, list[float]] = {c: [] for c in chunks}
    for c in chunks:
        run(c)  # warm: arena sized for this pass
    for _ in range(repeat):
        for c in chunks:
            t = time.process_time()
            run(c)
            times[c].append(time.process_time() - t)
    for c in chunks:
        n = len(spans(side, c))
        pixels = sum((min(side, b + halo_px) - max(0, a - halo_px)) for a, b in spans(side, c)) ** 2
        print(
            f"  passes of ~{c} px: {n} x {n}, {pixels / 1e6:.2f} Mpx; {min(times[c]) * 1e3:.0f} ms per frame "
            f"(runs {', '.join(f'{t * 1e3:.0f}' for t in times[c])})"
        )


def main() -> None:
    """Build the bundled model's backbone and print both measurements."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fp32", action="store_true")
    parser.add_argument("--side", type=int, default=832, help="side of the profiled pass (default 832: 800 + halo)")
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--chunks", type=int, nargs="*", default=[800, 1200, 2400])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from amberwatch.model.backbone_onnx import model_bytes
    from amberwatch.model.modelfile import load

    clf = load(None)
    data = model_bytes(clf.backbone, None if args.fp32 else clf.int8.ranges)
    image = np.asarray(Image.open(TEXTY / "positive1.png").convert("RGB"))
    frame = np.ascontiguousarray(np.tile(image, (3, 3, 1))[:2368, :2368])
    op_breakdown(data, frame[: args.side, : args.side], args.runs)
    print(f"block frame {frame.shape[0]} px, halo {clf.recipe.halo_px} px:")
    frame_passes(data, frame, args.chunks, clf.recipe.halo_px, args.repeat)


if __name__ == "__main__":
    main()
