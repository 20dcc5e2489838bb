"""Jobs over shared data in spawned processes: the CNN's networks and the pretrained heads' CV folds train this way."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

_SHARED: dict[str, Any] = {}  # in a worker: the job function and the data every job reads


def _init(fn: Callable[[Any, Any], Any], shared: Any) -> None:
    _SHARED.update(fn=fn, shared=shared)


def _run(job: Any) -> Any:
    return _SHARED["fn"](_SHARED["shared"], job)


def map_in_processes(fn: Callable[[Any, Any], Any], shared: Any, jobs: Sequence[Any], workers: int) -> list:
    """fn(shared, job) for every job, in order: in `workers` spawned processes that each receive `shared` once, or
    in this process when workers <= 1 or there is one job. fn must be a module-level function."""
    if workers <= 1 or len(jobs) <= 1:
        return [fn(shared, job) for job in jobs]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(
        max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_init, initargs=(fn, shared)
    ) as pool:
        return list(pool.map(_run, jobs))
