"""Where a warm scan's CPU goes per tile, outside and inside the backbone, in ONE process (CPU time, not wall).

Serves bench/scan.py's imagery on 127.0.0.1, fills a tile cache with a cold scan of --tiles tiles (block-aligned, as
the inside of a large AOI), then runs ``process_unit`` over every unit again in this process with the bundled
model (int8 unless --fp32), timing each stage with time.thread_time (exclusive of the stages it calls, per thread:
process_unit reads on a thread of its own while it classifies), and
prints CPU ms per tile scored per stage. ``--cprofile`` also prints the top functions; ``--dump FILE`` saves every
tile's grid and embedding bytes to compare two versions of the code (``--compare FILE``).
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import pickle
import pstats
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import mercantile
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from amberwatch.imagery.aoi import aoi_from_bbox
from scan import CENTER, ZOOM, PoolTileServer, tile_pool

_EXCLUSIVE: dict[str, float] = {}
_CALLS: dict[str, int] = {}
_STACKS = threading.local()  # .frames: this thread's open timed calls
_LOCK = threading.Lock()


def timed(name: str, fn):
    """fn, its thread's CPU time (less the timed calls inside it) added to _EXCLUSIVE[name]."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        stack = _STACKS.__dict__.setdefault("frames", [])
        frame = [time.thread_time(), 0.0]
        stack.append(frame)
        try:
            return fn(*args, **kwargs)
        finally:
            stack.pop()
            spent = time.thread_time() - frame[0]
            with _LOCK:
                _EXCLUSIVE[name] = _EXCLUSIVE.get(name, 0.0) + spent - frame[1]
                _CALLS[name] = _CALLS.get(name, 0) + 1
            if stack:
                stack[-1][1] += spent

    return wrapper


def instrument() -> None:
    """Wrap the stages of a scan unit with timers (class attributes and the worker's module globals)."""
    import amberwatch.imagery.sources as sources
    import amberwatch.model.pretrained as pretrained
    import amberwatch.scan.worker as worker
    from amberwatch.imagery.cache import TileCache
    from amberwatch.model.backbone_onnx import OnnxBackbone

    P = pretrained.PretrainedClassifier
    patches = [
        (TileCache, "get", "tile cache SELECT"),
        (sources, "decode_with_valid", "PNG decode"),
        (sources.TileSource, "_geoimage", "GeoImage build"),
        (worker, "_read_tiles", "read loop (rest)"),
        (worker, "_triage", "triage"),
        (worker, "resample", "resample"),
        (worker, "_block_frame", "frame assembly (rest)"),
        (OnnxBackbone, "stage_maps", "backbone (ORT)"),
        (OnnxBackbone, "pixel_stage_maps", "backbone (ORT)"),
        (P, "_pool_fine", "cell pooling (avg_pool2d)"),
        (P, "_cells", "stage projection + coarse add"),
        (P, "cell_maps", "cell_maps (rest: pad, float, copy-out)"),
        (pretrained, "box_mean", "box means (cell grid)"),
        (pretrained, "box_mean_2x", "box means (2x grid)"),
        (P, "_add_std_part", "std moments (rest: var, sqrt, addmm)"),
        (P, "grid_and_cell_embeddings", "head (rest)"),
        (P, "tile_embedding", "tile embeddings"),
        (worker, "cells_with_imagery", "valid cells"),
        (worker, "quantize", "quantize"),
        (worker, "_classify_block", "TileRow building (rest)"),
    ]
    for owner, attr, name in patches:
        if hasattr(owner, attr):  # older code may lack a stage: the profile compares versions
            setattr(owner, attr, timed(name, getattr(owner, attr)))


def aligned_bbox(side_tiles: int) -> str:
    """A W,S,E,N bbox of side_tiles x side_tiles whole tiles near CENTER starting on a multiple of 16 (whole units)."""
    t = mercantile.tile(*CENTER, ZOOM)
    x0, y0 = t.x // 16 * 16, t.y // 16 * 16
    west, _, _, north = mercantile.bounds(x0, y0, ZOOM)
    _, south, east, _ = mercantile.bounds(x0 + side_tiles - 1, y0 + side_tiles - 1, ZOOM)
    eps = 1e-7
    return f"{west + eps},{south + eps},{east - eps},{north - eps}"


def main() -> None:
    """Fill the cache, profile the warm units, print the breakdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=16, help="tiles per side of the block-aligned AOI (default 16)")
    parser.add_argument("--fp32", action="store_true")
    parser.add_argument("--repeat", type=int, default=3, help="runs over the units; each stage's least CPU is shown")
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument("--dump", type=Path, help="write every tile's grid and embedding here (pickle)")
    parser.add_argument("--compare", type=Path, help="compare every tile's grid and embedding with this dump")
    parser.add_argument("--workdir", type=Path, help="keep the DB and tile cache here (reused when present)")
    parser.add_argument("--block-tiles", type=int, help="tiles per block side (default: the scan's)")
    parser.add_argument("--model", type=Path, help="model file to scan with (default: the bundled model)")
    parser.add_argument(
        "--texty",
        type=Path,
        default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "texty-amber" / "tiles",
    )
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)  # as init_worker does in every scan worker
    from amberwatch.project import Project
    from amberwatch.scan.engine import ScanSettings, _prepare, run_scan
    from amberwatch.scan.tiling import iter_units
    from amberwatch.scan.worker import process_unit, release, remember_model

    server = PoolTileServer(tile_pool(args.texty))
    aoi = aoi_from_bbox(aligned_bbox(args.side))
    with tempfile.TemporaryDirectory(prefix="amberwatch-profile-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        db = work / "profile.db"
        if not db.exists():
            run_scan(aoi, server.url, ZOOM, db, ScanSettings(workers=1, progress=False))
        model = str(args.model) if args.model else None
        settings = ScanSettings(workers=1, progress=False, new=True, int8=not args.fp32, model_path=model)
        with Project.using(db) as project:
            job = _prepare(aoi, server.url, ZOOM, project, settings)
        ctx = job.context
        if args.block_tiles:  # a what-if geometry (16 x 16 blocks fit the 16 x 16 units used here)
            ctx = replace(ctx, block_tiles=args.block_tiles)
        remember_model(ctx.model_path, ctx.model_version, job.clf, ctx.int8)
        units = list(iter_units(aoi.geometry, ZOOM, unit_zoom_delta=4))
        process_unit(units[0], ctx)  # warm: sessions built, first allocations done
        instrument()
        profiler = cProfile.Profile() if args.cprofile else None
        runs = []
        for _ in range(args.repeat):
            _EXCLUSIVE.clear()
            cpu0, wall0 = time.process_time(), time.perf_counter()
            if profiler:
                profiler.enable()
            results = [process_unit(unit, ctx) for unit in units]
            if profiler:
                profiler.disable()
            runs.append((time.process_time() - cpu0, time.perf_counter() - wall0, dict(_EXCLUSIVE)))
        cpu, wall = min(r[0] for r in runs), min(r[1] for r in runs)
        for name in _EXCLUSIVE:  # the least of each stage over the runs: others' load on the machine only adds
            _EXCLUSIVE[name] = min(r[2][name] for r in runs)
        _CALLS.update({name: n // args.repeat for name, n in _CALLS.items()})
        t = time.process_time()
        blobs = [pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL) for r in results]
        _ = [pickle.loads(b) for b in blobs]
        pickle_s = time.process_time() - t
        write_s = _write(db, results)
        release()
    server.stop()
    report(ctx, results, cpu, wall, pickle_s, sum(map(len, blobs)), write_s, args)
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def _write(db: Path, results: list) -> float:
    """CPU seconds the main process spends writing these results (a new scan row of the same DB)."""
    from amberwatch.db import connect
    from amberwatch.results.store import write_tiles

    conn = connect(db)
    scan_id = conn.execute("SELECT MAX(id) FROM scans").fetchone()[0]
    conn.execute("DELETE FROM scan_tiles WHERE scan_id = ?", (scan_id,))
    t = time.process_time()
    for r in results:
        write_tiles(conn, scan_id, r.tiles)
    spent = time.process_time() - t
    conn.close()
    return spent


def report(ctx, results, cpu, wall, pickle_s, pickle_bytes, write_s, args) -> None:
    """Print the breakdown (and dump or compare the grids)."""
    tiles = sorted((t for r in results for t in r.tiles), key=lambda t: (t.x, t.y))
    done = [t for t in tiles if t.status == "done"]
    n = len(done)
    print(f"context: tile_px {ctx.tile_px}, margin_px {ctx.margin_px}, ring {ctx.ring_tiles}, block {ctx.block_tiles}")
    print(f"{n} tiles scored ({len(tiles)} total), int8={ctx.int8}; CPU {cpu:.2f} s, wall {wall:.2f} s")
    print(f"{'stage':44s} {'CPU ms/tile':>11s} {'share':>6s} {'calls':>6s}")
    for name, s in sorted(_EXCLUSIVE.items(), key=lambda kv: -kv[1]):
        print(f"{name:44s} {s / n * 1e3:11.2f} {s / cpu:6.1%} {_CALLS[name]:6d}")
    rest = max(0.0, cpu - sum(_EXCLUSIVE.values()))
    print(f"{'process_unit (rest, untimed)':44s} {rest / n * 1e3:11.2f} {rest / cpu:6.1%}")
    print(f"{'TOTAL worker (least run)':44s} {cpu / n * 1e3:11.2f}")
    print(f"{'sum of the stages (least of each)':44s} {sum(_EXCLUSIVE.values()) / n * 1e3:11.2f}")
    print(f"pickling UnitResults (dump + load): {pickle_s / n * 1e3:.3f} ms/tile, {pickle_bytes / n:.0f} B/tile")
    print(f"main process write_tiles: {write_s / n * 1e3:.3f} ms/tile")
    total = sum(_EXCLUSIVE.values()) / n + pickle_s / n + write_s / n
    print(f"=> ~{2 / total:.0f} tiles/s on 2 otherwise idle cores of this CPU (stages + pickling + writer)")
    grids = {(t.x, t.y): (t.grid, t.embedding, t.max_prob) for t in done}
    if args.dump:
        args.dump.write_bytes(pickle.dumps(grids))
    if args.compare:
        compare(pickle.loads(args.compare.read_bytes()), grids)


def compare(old: dict, new: dict) -> None:
    """Print how far every tile's grid and embedding moved."""
    assert old.keys() == new.keys(), "different tiles scored"
    same = sum(old[k][0] == new[k][0] for k in old)
    dq = max(
        int(np.abs(np.frombuffer(old[k][0], np.uint8).astype(int) - np.frombuffer(new[k][0], np.uint8)).max())
        for k in old
    )
    dp = max(abs(old[k][2] - new[k][2]) for k in old)
    emb = [k for k in old if old[k][1] is not None]
    de = max(
        (
            float(
                np.abs(
                    np.frombuffer(old[k][1], np.float16).astype(np.float32) - np.frombuffer(new[k][1], np.float16)
                ).max()
            )
            for k in emb
        ),
        default=0.0,
    )
    same_e = sum(old[k][1] == new[k][1] for k in emb)
    print(
        f"grids byte-identical: {same}/{len(old)} (max |d| {dq}/255); max |d max_prob| {dp:.3g}; "
        f"embeddings identical {same_e}/{len(emb)} (max |d| {de:.3g})"
    )


if __name__ == "__main__":
    main()
