"""CLI commands of the correction loop (registered by amberwatch.cli): ``retrain`` and ``models list|show|promote``."""

from __future__ import annotations

import json

import click

from amberwatch.db import resolve_db_path
from amberwatch.errors import ConflictError, DatabaseError
from amberwatch.options import db_option, recipe_option


def _fmt(value: object, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _existing_db(db: str):
    path = resolve_db_path(db)
    if not path.exists():
        raise DatabaseError(f"project database {str(path)!r} does not exist")
    return path


@click.group("models")
def models_group() -> None:
    """List, inspect and promote model versions (0 = the bundled model)."""


@models_group.command("list")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models_list(db: str, as_json: bool) -> None:
    """List model versions with their training counts and metrics; * marks the current one."""
    from amberwatch.model.registry import ModelRegistry

    with ModelRegistry.open(_existing_db(db)) as registry:
        versions = registry.versions()
    if as_json:
        click.echo(json.dumps([v.as_dict() for v in versions], indent=2))
        return
    click.echo(f"{'':1} {'version':>7}  {'created':<25} {'mining':>6} {'not':>6} {'cv_f1':>6} {'rev_acc':>7}  note")
    for v in versions:
        cv = (v.metrics.get("cv") or {}).get("f1")
        rev = (v.metrics.get("reviewed") or {}).get("accuracy")
        click.echo(
            f"{'*' if v.is_current else ' '} {v.version:>7}  {_fmt(v.created_at):<25} {_fmt(v.n_mining):>6} "
            f"{_fmt(v.n_not_mining):>6} {_fmt(cv):>6} {_fmt(rev):>7}  {v.note or ''}"
        )


@models_group.command("show")
@click.argument("version")
@db_option
def models_show(version: str, db: str) -> None:
    """Show one version's metadata, metrics and comparison with its parent, as JSON."""
    from amberwatch.model.registry import ModelRegistry

    with ModelRegistry.open(_existing_db(db)) as registry:
        info = registry.get(version)
    click.echo(json.dumps(info.as_dict(), indent=2, sort_keys=True))


@models_group.command("promote")
@click.argument("version")
@db_option
def models_promote(version: str, db: str) -> None:
    """Make VERSION the current model (used by scans by default)."""
    from amberwatch.model.registry import ModelRegistry

    with ModelRegistry.open(_existing_db(db)) as registry:
        info = registry.promote(version, forced=True, reason="promoted by hand")
    click.echo(f"Model version {info.version} is now current.")


@click.command("retrain")
@db_option
@click.option("--force", is_flag=True, help="Promote the new model even if it compares worse than the current one.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the CV folds and of training.")
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True, help="Block-grouped CV folds.")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Override the recipe's epochs (quicker, weaker).")
@click.option("--members", type=click.IntRange(min=1), default=None, help="Override the recipe's ensemble size.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes training networks in parallel (at most the free CPU cores).")
@click.option("--f1-tolerance", type=click.FloatRange(min=0.0), default=0.02, show_default=True,
              help="CV F1 drop tolerated before refusing to promote.")
@recipe_option
def retrain_command(db: str, force: bool, seed: int, folds: int, epochs: int | None, members: int | None,
                    workers: int, f1_tolerance: float, recipe: str) -> None:
    """Train a new model version from the examples and reviewed corrections; promote it unless it is worse."""
    from amberwatch.model.features import feature_cache_path
    from amberwatch.model.recipes import recipe_by_name
    from amberwatch.model.retrain import retrain

    chosen = recipe_by_name(recipe, epochs=epochs, members=members, feature_cache=str(feature_cache_path(db)))
    result = retrain(
        _existing_db(db), config=chosen, n_folds=folds, seed=seed,
        force=force, f1_tolerance=f1_tolerance, workers=workers, log=lambda m: click.echo(m, err=True),
    )
    click.echo(result.table())
    if not result.promoted:
        raise ConflictError(
            f"model version {result.candidate_version} was registered but not promoted: {'; '.join(result.reasons)}"
        )


COMMANDS: list[click.Command] = [models_group, retrain_command]
