"""Jobs in spawned processes: warm_pool's workers start ahead and serve every map inside the block."""

from __future__ import annotations

import os

from amberwatch.model.processes import map_in_processes, warm_pool


def _pid_and_sum(shared: list[int], job: int) -> tuple[int, int]:
    return os.getpid(), sum(shared) + job


def test_map_runs_jobs_in_order_with_the_shared_data():
    out = map_in_processes(_pid_and_sum, [1, 2, 3], [10, 20, 30], workers=2)
    assert [v for _, v in out] == [16, 26, 36]
    assert os.getpid() not in {pid for pid, _ in out}
    assert map_in_processes(_pid_and_sum, [1], [5, 6], workers=1) == [(os.getpid(), 6), (os.getpid(), 7)]


def test_warm_pool_workers_serve_every_map_in_the_block():
    with warm_pool(2):
        first = map_in_processes(_pid_and_sum, [1, 2], list(range(6)), workers=2)
        second = map_in_processes(_pid_and_sum, [100], list(range(6)), workers=2)  # new shared data, same workers
    assert [v for _, v in first] == [3, 4, 5, 6, 7, 8] and [v for _, v in second] == list(range(100, 106))
    pids = {pid for pid, _ in first + second}
    assert len(pids) <= 2 and os.getpid() not in pids
