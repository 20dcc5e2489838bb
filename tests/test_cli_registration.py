"""Command registration is static: each stage's commands.py exports its COMMANDS, cli.py imports them by name, and
no module attaches a command to another module's group when it is imported (issue 27 item 5)."""

from __future__ import annotations

import json
import subprocess
import sys

import click

from amberwatch import cli

# Imports the scan stage's commands alone, in a fresh interpreter: its 'scan' group must be whole by itself.
SCAN_ALONE = """
import json
from amberwatch.scan.commands import COMMANDS
print(json.dumps({c.name: sorted(getattr(c, "commands", {})) for c in COMMANDS}))
"""


def test_scan_group_has_diff_without_importing_anything_else():
    proc = subprocess.run([sys.executable, "-c", SCAN_ALONE], capture_output=True, text=True, timeout=120, check=True)
    groups = json.loads(proc.stdout.strip().splitlines()[-1])
    assert groups == {"scan": ["diff", "list", "report"], "similar": [], "rescan": []}


def test_cli_gathers_exactly_the_stages_commands():
    assert {c.name for c in cli.COMMANDS} == set(cli.main.commands)
    assert len(cli.COMMANDS) == len(cli.main.commands)  # no name registered twice
    assert all(isinstance(c, click.Command) for c in cli.COMMANDS)
    assert not hasattr(cli, "importlib")
