"""Click options shared by every stage's commands (kept out of cli.py to avoid import cycles)."""

from __future__ import annotations

import os

import click

db_option = click.option(
    "--db",
    "db",
    envvar="AMBERWATCH_DB",
    default="amberwatch.db",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Project SQLite database (env AMBERWATCH_DB).",
)


recipe_option = click.option(
    "--recipe",
    type=click.Choice(["pretrained", "pretrained-linear", "cnn"]),
    default="pretrained",
    show_default=True,
    help="pretrained: frozen EfficientNet-Lite0 features + a small MLP head (a few seconds per head once features "
    "are cached; its threshold's CV fits one per fold and split seed); pretrained-linear: the same features + "
    "logistic regression; cnn: the CNN trained from scratch (minutes).",
)

# SQLite stores integers in 64 bits: a larger id would overflow before the lookup could say "not found".
MAX_SQLITE_INT = 2**63 - 1


class IdType(click.IntRange):
    """A record id (scan, detection, sample, example): an integer from 1 to SQLite's largest, else a usage error."""

    name = "id"

    def __init__(self) -> None:
        super().__init__(min=1, max=MAX_SQLITE_INT)


ID = IdType()


class OutputFileType(click.Path):
    """A file to write: its folder must exist, checked before the command does any work (a usage error)."""

    def __init__(self) -> None:
        super().__init__(dir_okay=False)

    def convert(self, value, param, ctx):  # type: ignore[override]
        """The path, or a usage error naming the missing folder."""
        path = super().convert(value, param, ctx)
        folder = os.path.dirname(os.path.abspath(os.fsdecode(path)))
        if not os.path.isdir(folder):
            self.fail(f"folder {folder!r} of {os.fsdecode(path)!r} does not exist", param, ctx)
        return path


OUTPUT_FILE = OutputFileType()
