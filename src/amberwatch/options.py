"""Click options shared by every stage's commands (kept out of cli.py to avoid import cycles)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

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
Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def _default(value: object) -> dict[str, Any]:
    """An option's default, shown in its help; none given when None (Click then treats the option as unset, so a
    required option stays missing)."""
    return {} if value is None else {"default": value, "show_default": True}


def workers_option(help: str, *, default: int | None = 1, max_workers: int | None = None) -> Decorator:
    """``--workers N``: processes working in parallel (at least 1; ``default`` None: the command chooses)."""
    shown = {} if default is None else {"show_default": True}
    return click.option("--workers", type=click.IntRange(1, max_workers), default=default, help=help, **shown)


def seed_option(help: str | None = None, *, default: int | None = 0, kind: click.ParamType | type = int) -> Decorator:
    """``--seed N``: the random seed of folds, training or sampling, so a run can be repeated."""
    return click.option("--seed", type=kind, help=help, **_default(default))


def folds_option(help: str = "Block-grouped CV folds.", *, min_folds: int | None = None) -> Decorator:
    """``--folds K``: block-grouped cross-validation folds (default 5)."""
    kind = int if min_folds is None else click.IntRange(min=min_folds)
    return click.option("--folds", type=kind, default=5, show_default=True, help=help)


def out_option(
    help: str, *, folder: bool = False, required: bool = False, default: str | None = None, dest: str = "out"
) -> Decorator:
    """``--out PATH``: the file (or, with ``folder``, the folder) a command writes, passed as ``dest``."""
    kind = click.Path(file_okay=not folder, dir_okay=folder)
    return click.option("--out", dest, type=kind, required=required, help=help, **_default(default))


def data_option(help: str) -> Decorator:
    """``--data DIR``: a labelled folder (positive/, negative/) instead of the project's example store."""
    return click.option("--data", "data_dir", type=click.Path(file_okay=False), default=None, help=help)


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
