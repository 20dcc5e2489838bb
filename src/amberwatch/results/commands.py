"""CLI commands of the results stage (registered by amberwatch.cli)."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
