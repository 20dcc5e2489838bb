"""CLI commands of the imagery stage (registered by amberwatch.cli)."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
