"""CLI commands of the web stage (registered by amberwatch.cli)."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
