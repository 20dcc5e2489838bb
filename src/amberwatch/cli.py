"""The amberwatch command line: a thin Click front over the library.

Each stage's ``commands.py`` exports its Click commands and groups as ``COMMANDS``; this module imports
them by name and prints AmberwatchError messages without a traceback (exit 1). Click's own usage errors exit
2. The command modules import heavy libraries inside their commands only, so ``--help`` starts fast.
"""

from __future__ import annotations

import sys
import warnings
from typing import NoReturn

import click

from amberwatch import __version__
from amberwatch.db import storage_error
from amberwatch.errors import AmberwatchError, AmberwatchWarning
from amberwatch.imagery import commands as imagery_commands
from amberwatch.labels import commands as labels_commands
from amberwatch.loop import commands as loop_commands
from amberwatch.model import commands as model_commands
from amberwatch.publish import commands as publish_commands
from amberwatch.results import commands as results_commands
from amberwatch.review import commands as review_commands
from amberwatch.scan import commands as scan_commands
from amberwatch.story import commands as story_commands
from amberwatch.web import commands as web_commands

COMMANDS: tuple[click.Command, ...] = (
    *labels_commands.COMMANDS,
    *model_commands.COMMANDS,
    *imagery_commands.COMMANDS,
    *scan_commands.COMMANDS,
    *results_commands.COMMANDS,
    *review_commands.COMMANDS,
    *web_commands.COMMANDS,
    *story_commands.COMMANDS,
    *loop_commands.COMMANDS,
    *publish_commands.COMMANDS,
)


class AmberwatchGroup(click.Group):
    """Click group that turns AmberwatchError into a one-line message and exit code 1."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        """Run the command, printing amberwatch errors (and a full disk under any file) without a traceback."""
        try:
            return super().invoke(ctx)
        except AmberwatchError as exc:
            _fail(exc)
        except OSError as exc:  # a writer not wrapped in db.writing: name the file when the error knows it
            full = storage_error(exc, f"file {exc.filename!r}" if exc.filename else "an output file")
            if full is None:
                raise
            _fail(full)


def _fail(exc: AmberwatchError) -> NoReturn:
    """Print an amberwatch error on one line and exit 1."""
    click.secho(f"Error: {exc}", fg="red", err=True)
    sys.exit(1)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, AmberwatchWarning):
        click.secho(f"Warning: {message}", fg="yellow", err=True)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


@click.group(cls=AmberwatchGroup, commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="amberwatch")
def main() -> None:
    """Find illegal surface mining on imagery; map, measure and tell it."""
    warnings.showwarning = _show_warning


if __name__ == "__main__":
    main()
