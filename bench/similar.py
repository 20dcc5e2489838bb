"""Benchmark the similarity index on one core: exact numpy search (the same-run baseline) against faiss IVF.

On ``--n`` synthetic 64-dim embeddings (default 1,000,000), clustered like real ones: a few thousand Gaussian
clusters of uneven size and spread around centres drawn with a decaying (PCA-like) variance spectrum, rows
scaled to unit length and stored as float16 (128 bytes a tile). Queries are perturbed database rows.

Prints, for the exact search: ms per query and the memory of the stored vectors; for the IVF index as
``IvfIndex.build`` makes it (float16 codes): build time, index file size, the process RSS delta around the
build, and ms per query and recall@10 against the exact search for several nprobe values; the same for an
IVF-SQ8 index (8-bit codes, same nlist) for comparison; then the issue's targets, met or not, for the default.

Usage: python bench/similar.py [--n 1000000] [--queries 50] [--clusters 3000] [--spread 0.35]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core: set before numpy and faiss load their thread pools

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import faiss  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402

from amberwatch.results.vector_index import (  # noqa: E402
    DEFAULT_NPROBE,
    TRAIN_PER_LIST,
    ExactIndex,
    IvfIndex,
    unit_rows,
)

DIMS = 64
K = 10
NPROBES = (8, 16, 32, 64, 128)
TARGET_QUERY_S = 1.0
TARGET_BUILD_S_PER_M = 120.0
TARGET_MB_PER_M = 200.0
TARGET_RECALL = 0.95


def synthetic_embeddings(n: int, clusters: int, spread: float, seed: int = 0) -> np.ndarray:
    """(n, DIMS) float16 unit rows from a Gaussian mixture with uneven cluster sizes and spreads."""
    rng = np.random.default_rng(seed)
    spectrum = (1.0 + np.arange(DIMS)) ** -0.5  # per-dim standard deviation, decaying like PCA components
    centres = rng.standard_normal((clusters, DIMS)) * spectrum
    weights = rng.lognormal(0.0, 1.0, clusters)
    label = rng.choice(clusters, size=n, p=weights / weights.sum())
    scale = spread * rng.uniform(0.5, 1.5, clusters)  # some clusters tight, some loose
    out = np.empty((n, DIMS), dtype=np.float16)
    step = 131_072
    for a in range(0, n, step):
        lab = label[a : a + step]
        noise = rng.standard_normal((len(lab), DIMS)) * spectrum * scale[lab, None]
        out[a : a + step] = unit_rows(centres[lab] + noise)
    return out


class PeakRSS:
    """Samples this process's resident memory every few milliseconds and keeps the largest."""

    def __init__(self, every_s: float = 0.02) -> None:
        self.proc = psutil.Process()
        self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True)
        self._thread.start()

    def _run(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def stop(self) -> int:
        """Stop sampling; the peak RSS in bytes."""
        self._stop.set()
        self._thread.join()
        return max(self.peak, self.proc.memory_info().rss)


def timed_search(index, queries: np.ndarray) -> tuple[float, list[np.ndarray]]:
    """(mean ms per query, top-K rows of each query), one query at a time as `similar` asks."""
    index.search(queries[0], K)  # warm-up
    t0 = time.perf_counter()
    rows = [index.search(q, K)[1] for q in queries]
    return (time.perf_counter() - t0) * 1000 / len(queries), rows


def recall_at_k(found: list[np.ndarray], truth: list[np.ndarray]) -> float:
    """Mean share of the exact top-K found in the approximate top-K."""
    return float(np.mean([len(np.intersect1d(f, t)) / len(t) for f, t in zip(found, truth)]))


def verdict(ok: bool) -> str:
    """'met' or 'NOT met'."""
    return "met" if ok else "NOT met"


def build_measured(build) -> tuple[IvfIndex, dict]:
    """The index build() returns and its figures: build s, index file MB, RSS MB after and peak during the build."""
    rss = psutil.Process().memory_info().rss
    peak = PeakRSS()
    t0 = time.perf_counter()
    ivf = build()
    build_s = time.perf_counter() - t0
    rss_delta_mb = (psutil.Process().memory_info().rss - rss) / 2**20
    peak_delta_mb = (peak.stop() - rss) / 2**20
    with tempfile.TemporaryDirectory(prefix="amberwatch-bench-") as tmp:
        path = Path(tmp) / "index.faiss"
        ivf.save(path)
        file_mb = path.stat().st_size / 2**20
    return ivf, {"build_s": build_s, "file_mb": file_mb, "rss_mb": rss_delta_mb, "peak_mb": peak_delta_mb}


def sq8_build(vectors: np.ndarray, nlist: int, seed: int = 0) -> IvfIndex:
    """IVF-SQ8 (8-bit codes of residuals) with the same nlist and training sample size, for comparison."""
    n, dims = vectors.shape
    index = faiss.IndexIVFScalarQuantizer(
        faiss.IndexFlatIP(dims), dims, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
    )
    sample = np.random.default_rng(seed).choice(n, size=min(n, TRAIN_PER_LIST * nlist), replace=False)
    index.train(unit_rows(vectors[np.sort(sample)]).astype(np.float32))
    for a in range(0, n, 131_072):
        index.add(unit_rows(vectors[a : a + 131_072]).astype(np.float32))
    return IvfIndex(index)


def sweep(
    name: str, ivf: IvfIndex, fig: dict, queries: np.ndarray, truth: list, exact_ms: float, *, default: bool = True
) -> dict:
    """Print the build figures and, per nprobe, ms per query and recall@K; {nprobe: (ms, recall)}."""
    print(
        f"{name}: nlist {ivf.index.nlist}, build {fig['build_s']:.1f} s, index file {fig['file_mb']:.1f} MB "
        f"({fig['file_mb'] * 2**20 / ivf.index.ntotal:.0f} B/vector), RSS +{fig['rss_mb']:.1f} MB after the "
        f"build (peak +{fig['peak_mb']:.1f} MB during it)"
    )
    out = {}
    for nprobe in sorted({*NPROBES, DEFAULT_NPROBE}):
        ivf.index.nprobe = nprobe
        ms, found = timed_search(ivf, queries)
        out[nprobe] = (ms, recall_at_k(found, truth))
        mark = "  <- default" if default and nprobe == DEFAULT_NPROBE else ""
        print(
            f"  nprobe {nprobe:3d}: {ms:7.3f} ms/query ({exact_ms / ms:6.1f}x faster than exact)   "
            f"recall@{K} {out[nprobe][1]:.3f}{mark}"
        )
    ivf.index.nprobe = DEFAULT_NPROBE
    return out


def print_targets(n: int, fig: dict, ms: float, rec: float, exact_ms: float, exact_mb: float) -> None:
    """The issue's targets beside the figures of the default index, met or not."""
    per_m = 1e6 / n
    mem_mb = max(fig["file_mb"], fig["rss_mb"])
    print(f"targets (issue 13), IvfIndex defaults (nprobe {DEFAULT_NPROBE}), scaled to one million vectors:")
    rows = [
        ("query", f"{ms / 1000:.4f} s", f"<= {TARGET_QUERY_S:g} s on one core", ms / 1000 <= TARGET_QUERY_S),
        (
            "build",
            f"{fig['build_s'] * per_m:.1f} s/million",
            f"<= {TARGET_BUILD_S_PER_M:g} s per million",
            fig["build_s"] * per_m <= TARGET_BUILD_S_PER_M,
        ),
        (
            "memory",
            f"{mem_mb * per_m:.1f} MB/million",
            f"<= {TARGET_MB_PER_M:g} MB per million tiles (larger of file size, RSS delta)",
            mem_mb * per_m <= TARGET_MB_PER_M,
        ),
        (f"recall@{K}", f"{rec:.3f}", f">= {TARGET_RECALL}", rec >= TARGET_RECALL),
    ]
    for name, value, target, ok in rows:
        print(f"  {name:9s} {value:>18s}   target {target:58s} {verdict(ok)}")
    print(
        f"  (exact search, the baseline: {exact_ms / 1000:.4f} s/query, {exact_mb * per_m:.1f} MB/million of "
        f"float16 rows; IVF query {exact_ms / ms:.0f}x faster, memory IVF/exact {mem_mb / exact_mb:.2f})"
    )


def main() -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="vectors in the database (default 1,000,000)")
    parser.add_argument("--queries", type=int, default=50, help="queries (perturbed database rows)")
    parser.add_argument("--clusters", type=int, default=3000, help="Gaussian clusters in the synthetic data")
    parser.add_argument("--spread", type=float, default=0.35, help="cluster spread relative to the centres")
    parser.add_argument("--query-noise", type=float, default=0.1, help="length of the noise added to make a query")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-sq8", action="store_true", help="skip the IVF-SQ8 comparison")
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)

    t0 = time.perf_counter()
    vectors = synthetic_embeddings(args.n, args.clusters, args.spread, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    queries = vectors[rng.choice(args.n, size=args.queries, replace=False)].astype(np.float32)
    queries += rng.standard_normal(queries.shape).astype(np.float32) * args.query_noise / np.sqrt(DIMS)
    queries = unit_rows(queries).astype(np.float32)
    print(
        f"data: {args.n:,} x {DIMS} float16 unit rows, {args.clusters} clusters (spread {args.spread}), "
        f"{args.queries} queries = rows + noise of length {args.query_noise}, seed {args.seed}; "
        f"generated in {time.perf_counter() - t0:.1f} s"
    )
    print(
        f"threads: faiss {faiss.omp_get_max_threads()}, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (timings pessimistic when above 1)"
    )

    exact = ExactIndex(vectors)
    exact_ms, truth = timed_search(exact, queries)
    exact_mb = exact.rows.nbytes / 2**20
    print(f"exact (numpy, baseline): {exact_ms:.2f} ms/query, stored vectors {exact_mb:.1f} MB")

    ivf, fig = build_measured(lambda: IvfIndex.build(vectors))
    figures = sweep("IvfIndex.build (IVF, float16 codes)", ivf, fig, queries, truth, exact_ms)
    if not args.no_sq8:
        nlist = ivf.index.nlist
        sq8, sq8_fig = build_measured(lambda: sq8_build(vectors, nlist))
        sweep("IVF-SQ8 (8-bit codes), for comparison", sq8, sq8_fig, queries, truth, exact_ms, default=False)
        del sq8
    print_targets(args.n, fig, *figures[DEFAULT_NPROBE], exact_ms, exact_mb)
    return 0


if __name__ == "__main__":
    sys.exit(main())
