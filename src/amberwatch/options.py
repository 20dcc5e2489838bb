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
    type=click.Choice(["pretrained", "cnn"]),
    default="pretrained",
    show_default=True,
    help="pretrained: frozen EfficientNet-Lite0 features + linear head (seconds once features are cached); "
    "cnn: the CNN trained from scratch (minutes).",
)
