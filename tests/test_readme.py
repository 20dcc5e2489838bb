"""The README's test command: CI runs it verbatim, and it runs the slow tier whatever the fast one gives."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
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
