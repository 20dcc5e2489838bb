"""CLI commands of the correction loop (registered by amberwatch.cli)."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
