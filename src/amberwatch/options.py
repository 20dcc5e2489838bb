"""Click options shared by every stage's commands (kept out of cli.py to avoid import cycles)."""

from __future__ import annotations

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
