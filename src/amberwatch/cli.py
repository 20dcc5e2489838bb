"""The amberwatch command line: a thin Click front over the library.

Each stage keeps its commands in modules listed in ``COMMAND_MODULES`` (each with a ``COMMANDS`` list
of Click commands or groups); this module gathers them and prints AmberwatchError messages without a
traceback (exit 1). Click's own usage errors exit 2.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from typing import NoReturn

import click

from amberwatch import __version__
from amberwatch.db import storage_error
from amberwatch.errors import AmberwatchError, AmberwatchWarning

COMMAND_MODULES = (
    "amberwatch.labels.commands",
    "amberwatch.model.commands",
    "amberwatch.model.versions_commands",
    "amberwatch.imagery.commands",
    "amberwatch.scan.commands",
    "amberwatch.scan.layers_commands",
    "amberwatch.results.commands",
    "amberwatch.review.commands",
    "amberwatch.web.commands",
    "amberwatch.story.commands",
    "amberwatch.loop.commands",
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


@click.group(cls=AmberwatchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="amberwatch")
def main() -> None:
    """Find illegal surface mining on imagery; map, measure and tell it."""
    warnings.showwarning = _show_warning


for _module_name in COMMAND_MODULES:
    _module = importlib.import_module(_module_name)
    for _command in getattr(_module, "COMMANDS", []):
        main.add_command(_command)


if __name__ == "__main__":
    main()
