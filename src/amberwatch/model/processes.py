"""Jobs over shared data in worker processes: the CNN's networks and the pretrained heads' CV folds train this way."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any

_SHARED: dict[str, Any] = {}  # in a worker: the path of the shared data last loaded, and those data
_WARM: dict[int, ProcessPoolExecutor] = {}  # in the parent: processes started by warm_pool, by count


def _start_worker(warm_up: Callable[[], None] | None) -> None:
    import torch

    torch.set_num_threads(1)  # one of `workers` processes: a second thread would only compete with the others
    if warm_up is not None:
        warm_up()


def _run(item: tuple[Callable[[Any, Any], Any], str, Any]) -> Any:
    fn, path, job = item
    if _SHARED.get("path") != path:
        with open(path, "rb") as f:
            _SHARED.update(path=path, shared=pickle.load(f))
    return fn(_SHARED["shared"], job)


def _started() -> None:
    """A no-op job: submitting one per worker makes the pool start every process at once."""


def pool_context(preload: Sequence[str] = ()) -> mp.context.BaseContext:
    """Where worker processes come from: a forkserver (POSIX), started now with `preload` imported once so its
    children fork with those modules loaded (when it already runs, as it is); else freshly spawned interpreters."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    from multiprocessing import forkserver

    context = mp.get_context("forkserver")
    if preload:
        context.set_forkserver_preload(list(preload))  # no effect on a server already running
    forkserver.ensure_running()  # returns at once: the server imports while the caller goes on
    return context


@contextmanager
def warm_pool(workers: int, warm_up: Callable[[], None] | None = None) -> Iterator[None]:
    """Start `workers` processes now, so their imports and warm_up (a module-level function) run while the caller
    loads its data; map_in_processes with that many workers uses them until the block ends."""
    if workers <= 1 or workers in _WARM:
        yield
        return
    # Torch's optimisers import torch._dynamo on first use (~1 s): the forkserver does it once for every worker.
    context = pool_context(["amberwatch.model.pretrained", "torch._dynamo"])
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_start_worker, initargs=(warm_up,))
    try:
        for _ in range(workers):
            pool.submit(_started)
        _WARM[workers] = pool
        yield
    finally:
        _WARM.pop(workers, None)
        pool.shutdown(cancel_futures=True)


def map_in_processes(fn: Callable[[Any, Any], Any], shared: Any, jobs: Sequence[Any], workers: int) -> list:
    """fn(shared, job) for every job, in order: in `workers` processes (one torch thread each; warm_pool's when
    started) that each load `shared` once, or in this process when workers <= 1 or there is one job. fn must be
    module-level."""
    if workers <= 1 or len(jobs) <= 1:
        return [fn(shared, job) for job in jobs]
    # The shared data go through a file, not the spawn pipe: writing a large pipe blocks until the child has read
    # it, after its imports, so the workers would start one after the other.
    with tempfile.TemporaryDirectory(prefix="amberwatch-jobs-") as tmp:
        path = os.path.join(tmp, "shared.pickle")
        with open(path, "wb") as f:
            pickle.dump(shared, f, protocol=pickle.HIGHEST_PROTOCOL)
        with warm_pool(workers):  # its processes when already started
            return list(_WARM[workers].map(_run, [(fn, path, job) for job in jobs]))
