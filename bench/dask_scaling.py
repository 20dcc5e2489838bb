"""Benchmark scans on a Dask LocalCluster: scaling from 1 to 2 workers, and Dask overhead vs the local pool.

Serves Texty crops (or a synthetic texture) from a local HTTP tile server on 127.0.0.1 (the
``PoolTileServer`` of bench/scan.py), fills the tile cache once, then times end-to-end scans
(``run_scan``: plan, cluster or pool start-up, all tiles, detections) of the same AOI from the warm
cache, each as a new scan:

- local process pool, 2 workers            -> t_local_2
- Dask LocalCluster, 1 worker process      -> t_dask_1
- Dask LocalCluster, 2 worker processes    -> t_dask_2

and prints scaling efficiency t_dask_1 / (2 * t_dask_2) (goal >= 0.8) and Dask overhead
(t_dask_2 - t_local_2) / t_local_2 (goal <= 10%). ``--repeat`` takes the best of several runs
(the machine is shared); ``--tiles N`` sets the AOI size.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

from amberwatch.scan.aoi import aoi_from_bbox
from amberwatch.scan.engine import ScanOutcome, ScanSettings, run_scan

HERE = Path(__file__).resolve().parent
ZOOM = 18


def _bench_scan_module():
    """bench/scan.py (tile pool, pooled tile server, square AOI), loaded by path: bench/ is not a package."""
    spec = importlib.util.spec_from_file_location("amberwatch_bench_scan", HERE / "scan.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def timed(aoi, url: str, db: Path, repeat: int, **settings) -> ScanOutcome:
    """The fastest of ``repeat`` new scans with these settings."""
    runs = [run_scan(aoi, url, ZOOM, db, ScanSettings(progress=False, new=True, **settings)) for _ in range(repeat)]
    return min(runs, key=lambda o: o.seconds)


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=1600, help="z18 tiles in the AOI (default 1600)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per configuration, best kept (default 1)")
    parser.add_argument("--texty", type=Path, default=HERE.parent / ".." / "shared" / "data" / "texty-amber" / "tiles",
                        help="folder of Texty whole images (optional; else a synthetic texture)")
    args = parser.parse_args()

    bench_scan = _bench_scan_module()
    server = bench_scan.PoolTileServer(bench_scan.tile_pool(args.texty))
    aoi = aoi_from_bbox(bench_scan.square_bbox(args.tiles))
    try:
        with tempfile.TemporaryDirectory(prefix="amberwatch-dask-bench-") as tmp:
            db = Path(tmp) / "bench.db"
            cold = run_scan(aoi, server.url, ZOOM, db, ScanSettings(workers=2, progress=False))
            fetched = server.requests
            local_2 = timed(aoi, server.url, db, args.repeat, workers=2)
            dask_1 = timed(aoi, server.url, db, args.repeat, workers=1, dask="local")
            dask_2 = timed(aoi, server.url, db, args.repeat, workers=2, dask="local")
            assert server.requests == fetched, "a warm run fetched tiles over HTTP"
    finally:
        server.stop()

    tiles = cold.tiles_total
    print(f"AOI: {tiles} z{ZOOM} tiles ({cold.area_scanned_km2:.2f} km²), warm tile cache, end-to-end run_scan times "
          f"(best of {args.repeat}); cold fill took {cold.seconds:.1f} s")
    for label, o in (("local pool, 2 workers", local_2), ("dask local, 1 worker", dask_1),
                     ("dask local, 2 workers", dask_2)):
        print(f"  {label:<24} {o.seconds:7.2f} s  {o.tiles_processed_now / o.seconds:7.1f} tiles/s  "
              f"{o.detections} detections ({o.detections_area_ha:.1f} ha)")
    efficiency = dask_1.seconds / (2 * dask_2.seconds)
    overhead = (dask_2.seconds - local_2.seconds) / local_2.seconds
    print(f"scaling efficiency 1 -> 2 Dask workers: t1 / (2 * t2) = {efficiency:.2f}  (goal >= 0.8)")
    print(f"Dask overhead vs local pool (2 workers): (t_dask_2 - t_local_2) / t_local_2 = {overhead:+.1%}  "
          f"(goal <= 10%)")
    same = (local_2.detections, round(local_2.detections_area_ha, 6)) == (dask_2.detections,
                                                                        round(dask_2.detections_area_ha, 6))
    print(f"same detections local vs Dask: {same}")


if __name__ == "__main__":
    main()
