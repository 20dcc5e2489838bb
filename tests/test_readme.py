"""The README stays true: CI runs its test command, which runs both tiers; its Python example runs as written
(its imports, its calls and their arguments are today's).

Only what a test machine cannot have is swapped: ``dask_jobqueue.SLURMCluster`` is a real Dask LocalCluster (there
is no SLURM here), and the preset, the AOI file and the paths become the local tile server, a 2 x 2-tile AOI and
temporary files (no internet).
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import types
from pathlib import Path

import mercantile
import numpy as np
import pytest

from amberwatch.db import connect
from amberwatch.imagery.decode import encode_png
from amberwatch.results.store import get_scan

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
ZOOM = 18


def python_examples() -> list[str]:
    """The README's ```python blocks."""
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)


class _SlurmClusterHere:
    """dask_jobqueue.SLURMCluster's calls the README makes, on a real LocalCluster of one worker process."""

    def __init__(self, **job_options: object) -> None:
        from distributed import LocalCluster

        self.job_options = job_options
        self._cluster = LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.CRITICAL
        )
        self.scheduler_address = self._cluster.scheduler_address

    def scale(self, jobs: int) -> None:
        """One local worker whatever the number of jobs."""

    def close(self) -> None:
        self._cluster.close()


@pytest.fixture
def slurm_here(monkeypatch: pytest.MonkeyPatch):
    """A ``dask_jobqueue`` module whose SLURMCluster runs here; the clusters made are closed after the test."""
    made: list[_SlurmClusterHere] = []
    module = types.ModuleType("dask_jobqueue")
    module.SLURMCluster = lambda **kw: made.append(_SlurmClusterHere(**kw)) or made[-1]
    monkeypatch.setitem(sys.modules, "dask_jobqueue", module)
    yield made
    for cluster in made:
        cluster.close()


def _aoi_file(tile_server, folder: Path) -> Path:
    """A 2 x 2-tile AOI near Klesiv whose tiles (and their ring) the tile server serves."""
    t = mercantile.tile(26.90, 51.32, ZOOM)
    png = encode_png(np.random.default_rng(7).integers(60, 200, (256, 256, 3), dtype=np.uint8))  # imagery, not no-data
    for dx in range(-1, 3):
        for dy in range(-1, 3):
            tile_server.tiles[(ZOOM, t.x + dx, t.y + dy)] = png
    west, north = mercantile.ul(t.x, t.y, ZOOM)
    east, south = mercantile.ul(t.x + 2, t.y + 2, ZOOM)
    eps = 1e-7
    ring = [[west + eps, south + eps], [east - eps, south + eps], [east - eps, north - eps], [west + eps, north - eps]]
    path = folder / "aoi.geojson"
    path.write_text(json.dumps({"type": "Polygon", "coordinates": [[*ring, ring[0]]]}), encoding="utf-8")
    return path


def test_readme_has_one_python_example():
    (code,) = python_examples()
    assert "from amberwatch." in code


@pytest.mark.slow
def test_readme_python_example_scans_on_a_cluster(tile_server, slurm_here, tmp_path):
    """The SLURM example scans its AOI over Dask into the project DB."""
    (code,) = python_examples()
    db = tmp_path / "amberwatch.db"
    swaps = {
        '"Esri.WorldImagery"': repr(tile_server.url),
        '"examples/rivne-klesiv.geojson"': repr(str(_aoi_file(tile_server, tmp_path))),
        '"amberwatch.db"': repr(str(db)),
        '"/tmp/$USER/amberwatch-tiles.sqlite"': repr(str(tmp_path / "worker-tiles.sqlite")),
    }
    for old, new in swaps.items():
        assert old in code, f"the README example no longer has {old}: update this test"
        code = code.replace(old, new)
    exec(compile(code, str(README), "exec"), {"__name__": "readme_example"})
    assert len(slurm_here) == 1 and slurm_here[0].job_options["processes"] == 8
    conn = connect(db, create=False)
    try:
        scan = get_scan(conn)
    finally:
        conn.close()
    assert (scan.status, scan.tiles_total, scan.tiles_done) == ("finished", 4, 4)


STUB_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "$(dirname "$0")/../../tiers.log"
if [ "$*" = "-m pytest" ]; then exit "$FAST_EXIT"; else exit "$SLOW_EXIT"; fi
"""


def readme_test_command() -> str:
    """The one-line command of the README's block that runs the tests."""
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), re.S)
    commands = [line for block in blocks for line in block.splitlines() if "pytest -m slow" in line]
    assert len(commands) == 1, commands
    return commands[0]


def test_ci_runs_the_readmes_test_command_verbatim():
    ci_lines = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert readme_test_command() in ci_lines


@pytest.mark.parametrize(("fast", "slow", "exit_code"), [(0, 0, 0), (1, 0, 1), (0, 1, 1), (1, 1, 1), (5, 0, 1)])
def test_the_slow_tier_runs_whatever_the_fast_one_gives_and_either_failing_fails_the_command(
    tmp_path, fast, slow, exit_code
):
    tiers = readme_test_command().split(" && ", 4)[-1]  # after set-up and lint: the two test tiers
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(STUB_PYTHON)
    python.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "FAST_EXIT": str(fast), "SLOW_EXIT": str(slow)}
    for shell in (["bash", "-c"], ["bash", "-euo", "pipefail", "-c"]):  # by hand, and as .ci/run runs it
        (tmp_path / "tiers.log").unlink(missing_ok=True)
        done = subprocess.run([*shell, tiers], cwd=tmp_path, env=env, timeout=30, check=False)
        assert (tmp_path / "tiers.log").read_text().splitlines() == ["-m pytest", "-m pytest -m slow"]
        assert (done.returncode != 0) == bool(exit_code), (shell, tiers)
