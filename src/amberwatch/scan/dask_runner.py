"""Run scan units on a Dask cluster: an existing scheduler (``tcp://HOST:8786``) or a LocalCluster.

The engine stays the same: it streams units, and this runner submits them as Dask tasks with
bounded in-flight work (``distributed.as_completed``), hands each result back to the engine's single
writer, and cleans up. Workers call the same pure ``process_unit`` as the local process pool:

- the model's bytes are put once on the scheduler (a Dask ``Variable``), not on a worker: each worker process
  (also one a nanny restarts after a crash) fetches and deserialises them at its first unit and keeps the model
  in the worker module's cache; tasks only carry the small scan context and the variable's name. Scattered data
  would not do: Dask's memory manager keeps one copy of it, and the loss of that worker fails the whole scan;
- workers never touch the project DB; they read and fill a tile cache: the client's own cache file for
  ``local`` clusters (same machine), else ``--worker-cache`` as seen by each worker (default
  ``~/.cache/amberwatch/worker-tiles.sqlite``: one file per host, shared by its worker processes);
- a worker that dies mid-task has its unit rescheduled elsewhere (a task has no input a worker holds; and
  ``retries`` covers task errors);
  the writer's per-tile upsert never records a finished tile twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from amberwatch.errors import AmberwatchError, ModelError
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.open import open_ref
from amberwatch.model.modelfile import from_bytes
from amberwatch.project import existing_cache_name
from amberwatch.scan.tiling import Unit
from amberwatch.scan.worker import CoarseContext, ScanContext, UnitResult, neighbours, process_unit, remember_model

LOCAL = "local"
DEFAULT_WORKER_CACHE = "~/.cache/amberwatch/worker-tiles.sqlite"  # a host's older worker-tiles.mbtiles is kept
IN_FLIGHT_PER_THREAD = 3  # units queued per worker thread: enough to hide latency, bounded for huge AOIs
TASK_RETRIES = 2
STATUS_EVERY_S = 10.0
CONNECT_TIMEOUT_S = 30.0
# Worker settings for LocalCluster (remote workers get the malloc fix from _tune_process at their first unit):
# - no MALLOC_TRIM_THRESHOLD_ (Dask's default): setting it switches off glibc's adaptive mmap threshold,
#   so every large image/activation buffer becomes a fresh mmap with page faults: ~70% more CPU per unit;
# - no statistical profiler (it samples worker threads every 10 ms and only feeds the dashboard).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
MALLOC_KEEP_BYTES = 64 * 1024 * 1024  # buffers below this come from the heap, and stay there when freed
LOCAL_WORKER_CONFIG = {
    "distributed.nanny.pre-spawn-environ": {"OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1},
    "distributed.worker.profile.enabled": False,
}

_lock = threading.Lock()  # one unit at a time per worker process (module caches are per process)
_loaded_model: tuple | None = None
_process_ready = False


class ClusterError(AmberwatchError):
    """The Dask cluster cannot be reached, has no workers, or lost a unit for good."""


def run_unit(
    unit: Unit,
    context: ScanContext,
    todo: tuple[tuple[int, int], ...],
    model_name: str | None,
    model_digest: str = "",
    coarse: CoarseContext | None = None,
) -> UnitResult:
    """Dask task: process one unit on a worker with the scheduler's model (fetched once per process)."""
    global _process_ready
    with _lock:
        if not _process_ready:
            _tune_process(context.torch_threads)
            _process_ready = True
        cache_path = str(existing_cache_name(Path(os.path.expandvars(os.path.expanduser(context.cache_path)))))
        if cache_path != context.cache_path:
            Path(cache_path).parent.mkdir(parents=True, exist_ok=True)
            context = dataclasses.replace(context, cache_path=cache_path)
        _ensure_model(context, model_name, model_digest)
        return process_unit(unit, context, todo, coarse)


def _tune_process(torch_threads: int | None) -> None:
    """Once per worker process: torch threads, and glibc's malloc back to adaptive if Dask pinned it."""
    if torch_threads:
        import torch

        torch.set_num_threads(torch_threads)
    if os.environ.get("MALLOC_TRIM_THRESHOLD_"):  # Dask nannies set it by default (see LOCAL_WORKER_CONFIG)
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(M_TRIM_THRESHOLD, MALLOC_KEEP_BYTES)
            libc.mallopt(M_MMAP_THRESHOLD, MALLOC_KEEP_BYTES)
        except (OSError, AttributeError):  # not glibc: nothing to undo
            pass


def _ensure_model(context: ScanContext, model_name: str | None, digest: str) -> None:
    """Seed the worker's model cache from the scheduler's bytes ``model_name``, once per process and model."""
    global _loaded_model
    if model_name is None:
        return  # the worker loads the model itself from context.model_path / its bundled model
    key = (context.model_path, context.model_version, digest)  # a long-lived worker may see a retrained model
    if _loaded_model == key:
        return
    from distributed import Variable, get_client

    model_data = Variable(model_name, client=get_client()).get(timeout=CONNECT_TIMEOUT_S)
    model = model_from_client(model_data, digest, context.model_version)
    model.version = context.model_version
    if context.int8:  # a cluster's CPUs may differ from the client's: one scan never mixes precisions
        check = model.check_int8()
        if not check.passed:
            raise ModelError(f"worker {socket.gethostname()}: {check.summary()}; run the scan with --fp32")
    remember_model(context.model_path, context.model_version, model, context.int8)
    _loaded_model = key


def model_from_client(data: bytes, digest: str, version: str):
    """The model in the client's bytes, checked against their sha256 (sent with every task) and their content digest."""
    name = f"model version {version} (from the Dask client)"
    actual = hashlib.sha256(data).hexdigest()
    if digest and actual != digest:
        raise ModelError(f"{name}: the scheduler holds bytes with sha256 {actual}, but the client sent {digest}")
    return from_bytes(data, name=name, file_checked=bool(digest))


def amberwatch_version() -> str:
    """The amberwatch version installed where this runs (asked of every worker at connect time)."""
    from importlib.metadata import version

    return version("amberwatch")


def start_cluster(address: str, workers: int | None, say: Callable[[str], None]):
    """(client, cluster or None): connect to ``address``, or start a LocalCluster of ``workers`` processes."""
    import dask
    from distributed import Client, LocalCluster

    cluster = None
    if address == LOCAL:
        n = max(1, int(workers or os.cpu_count() or 1))
        kwargs = dict(n_workers=n, threads_per_worker=1, processes=True, silence_logs=logging.ERROR)
        with dask.config.set(_local_worker_config()):  # the nannies hand this config to their worker processes
            _preload_forkserver()
            try:
                cluster = LocalCluster(dashboard_address=":0", **kwargs)  # a free port: scans may run side by side
            except Exception:
                cluster = LocalCluster(dashboard_address=None, **kwargs)
        client = Client(cluster)
        say(f"dask: started a local cluster of {n} worker processes (1 thread each) at {cluster.scheduler_address}")
    else:
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(f"cannot connect to the Dask scheduler {address!r}: {exc}") from exc
        try:
            client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            client.close()
            raise ClusterError(
                f"the Dask scheduler {address!r} has no workers (waited {CONNECT_TIMEOUT_S:g} s)"
            ) from exc
        try:
            _check_versions(client, address)
        except ClusterError:
            client.close()
            raise
        say(
            f"dask: connected to {address} with {len(client.nthreads())} workers, "
            f"{sum(client.nthreads().values())} threads"
        )
    link = dashboard_link(client)
    if link:
        say(f"dask: dashboard at {link}")
    else:
        say("dask: no dashboard (the scheduler needs bokeh: pip install bokeh)")
    return client, cluster


def _local_worker_config() -> dict:
    """LOCAL_WORKER_CONFIG, plus forkserver-started workers where the platform has it."""
    import multiprocessing

    config = dict(LOCAL_WORKER_CONFIG)
    if "forkserver" in multiprocessing.get_all_start_methods():
        config["distributed.worker.multiprocessing-method"] = "forkserver"
    return config


def _preload_forkserver() -> None:
    """Fork LocalCluster workers from a server that imported torch and the scan code once, not once per worker."""
    import dask
    from distributed.utils import get_mp_context

    if dask.config.get("distributed.worker.multiprocessing-method") == "forkserver":
        get_mp_context().set_forkserver_preload(["distributed", "torch", "amberwatch.scan.dask_runner"])


def dashboard_link(client) -> str | None:
    """The scheduler's dashboard URL if it answers (it needs bokeh), else None."""
    import httpx

    try:
        link = client.dashboard_link
        page = httpx.get(link, timeout=3.0)
        # Without bokeh the scheduler still answers, with a page asking to install it.
        return link if page.status_code == 200 and "needs bokeh" not in page.text else None
    except Exception:
        return None


def _check_versions(client, address: str) -> None:
    """Refuse workers that lack amberwatch or run another version than the client."""
    mine = amberwatch_version()
    try:
        theirs = client.run(amberwatch_version)
    except Exception as exc:
        raise ClusterError(
            f"the workers of {address!r} cannot run amberwatch ({type(exc).__name__}: {exc}); "
            f"install it on every worker: pip install amberwatch=={mine}"
        ) from exc
    wrong = {w: v for w, v in theirs.items() if v != mine}
    if wrong:
        worker, version = next(iter(wrong.items()))
        raise ClusterError(
            f"worker {worker} of {address!r} runs amberwatch {version}, the client {mine}; "
            f"install the same version on every worker: pip install amberwatch=={mine}"
        )


def run_units_dask(
    units: Iterator[tuple[Unit, tuple]],
    context: ScanContext,
    model,
    *,
    address: str,
    workers: int | None = None,
    worker_cache: str | None = None,
    max_in_flight: int | None = None,
    total_tiles: int | None = None,
    say: Callable[[str], None] | None = None,
) -> Iterator[UnitResult]:
    """Yield the results of ``units`` processed on a Dask cluster, with at most ~3 units per worker thread in flight."""
    say = say or (lambda _msg: None)
    client, cluster = start_cluster(address, workers, say)
    client_cache = context.cache_path
    if address != LOCAL:
        context = dataclasses.replace(context, cache_path=worker_cache or DEFAULT_WORKER_CACHE)
    elif worker_cache:
        context = dataclasses.replace(context, cache_path=worker_cache)
    hits: set[tuple[int, int]] = set()
    finished = False
    try:
        with _model_on_scheduler(client, model) as (model_name, model_digest):
            submit = _submitter(client, context, model_name, model_digest)
            stream = _bounded(client, units, submit, max_in_flight)
            try:
                status = _Status(total_tiles, say)
                for result, in_flight in stream:
                    if client_cache != context.cache_path:
                        hits.update(
                            (t.x, t.y)
                            for t in result.tiles
                            if t.status == "done" and t.max_prob is not None and t.max_prob >= model.threshold
                        )
                    yield result
                    status.update(result, in_flight)
                finished = True
            finally:
                stream.close()  # cancels the units still in flight before the model and the client go
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    if finished and hits:
        fill_client_cache(context, client_cache, hits)


@contextmanager
def _model_on_scheduler(client, model) -> Iterator[tuple[str, str]]:
    """(name, sha256) of the model's bytes held by the scheduler for the run: no worker holds the only copy."""
    from distributed import Variable

    model_bytes = model.to_bytes()
    variable = Variable(f"amberwatch-model-{uuid.uuid4().hex}", client=client)
    variable.set(model_bytes)
    try:
        yield variable.name, hashlib.sha256(model_bytes).hexdigest()
    finally:
        with suppress(Exception):  # the scheduler may be gone: then there is nothing to free
            variable.delete()  # a shared scheduler outlives the scan: free its copy of the model


def _submitter(client, context: ScanContext, model_name: str, model_digest: str) -> Callable:
    """submit(n, unit, todo[, coarse]) -> future of run_unit; workers fetch the model from the scheduler's
    ``model_name``."""
    run_id = uuid.uuid4().hex[:8]

    def submit(n: int, unit: Unit, todo: tuple, coarse: CoarseContext | None = None):
        return client.submit(
            run_unit,
            unit,
            context,
            todo,
            model_name,
            model_digest,
            coarse,
            key=f"amberwatch-unit-{run_id}-{n}",
            retries=TASK_RETRIES,
            pure=False,
        )

    return submit


def _bounded(
    client, units: Iterator[tuple[Unit, tuple]], submit: Callable, max_in_flight: int | None
) -> Iterator[tuple[UnitResult, int]]:
    """Submit units with a bounded number in flight; yield (result, units still in flight) as they complete."""
    from distributed import as_completed

    ac = as_completed()
    pending: set = set()
    limit_checked, limit = 0.0, 1
    submitted = 0
    source = iter(units)
    exhausted = False
    try:
        while True:
            now = time.perf_counter()
            if now - limit_checked > 1.0:  # workers may join or leave a running cluster
                threads = sum(client.nthreads().values()) or 1
                limit = max(1, max_in_flight or IN_FLIGHT_PER_THREAD * threads)
                limit_checked = now
            while not exhausted and len(pending) < limit:
                item = next(source, None)
                if item is None:
                    exhausted = True
                    break
                fut = submit(submitted, *item)
                submitted += 1
                pending.add(fut)
                ac.add(fut)
            if not pending:
                break
            fut = next(ac)
            pending.discard(fut)
            yield _result(fut), len(pending)
    finally:
        for fut in pending:
            fut.cancel()


class _Status:
    """A status line every STATUS_EVERY_S seconds: units and tiles done, units in flight, rate."""

    def __init__(self, total_tiles: int | None, say: Callable[[str], None]) -> None:
        self.total_tiles, self.say = total_tiles, say
        self.started = self.last = time.perf_counter()
        self.units = self.tiles = 0

    def update(self, result: UnitResult, in_flight: int) -> None:
        """Count one finished unit; say the status when it is due."""
        self.units += 1
        self.tiles += len(result.tiles)
        now = time.perf_counter()
        if now - self.last >= STATUS_EVERY_S:
            self.say(_status(self.units, in_flight, self.tiles, self.total_tiles, now - self.started))
            self.last = now


def _result(fut) -> UnitResult:
    from distributed import KilledWorker

    try:
        return fut.result()
    except KilledWorker as exc:
        raise ClusterError(
            f"a unit of work killed every worker that tried it ({exc}); the tiles done so far are saved, "
            "run the same command again to resume"
        ) from exc


def _status(units: int, in_flight: int, tiles: int, total: int | None, seconds: float) -> str:
    rate = tiles / seconds if seconds > 0 else 0.0
    text = f"dask: {units} units done ({in_flight} in flight), {tiles:,} tiles"
    if total:
        text += f" of {total:,}"
    text += f", {rate:.0f} tiles/s"
    if total and rate > 0:
        text += f", ETA {max(0.0, (total - tiles) / rate):.0f} s"
    return text


def fill_client_cache(context: ScanContext, client_cache: str, tiles: set[tuple[int, int]]) -> None:
    """Fetch tiles with detections (and their neighbours) into the client's cache, for detection thumbnails."""
    import warnings

    z = context.zoom
    needed = sorted({nb for x, y in tiles for nb in neighbours(x, y, z)})
    with TileCache(client_cache) as cache:
        source = open_ref(context.imagery, cache=cache)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for _ in source.read_tiles((z, x, y) for x, y in needed):
                    pass
        finally:
            source.close()
