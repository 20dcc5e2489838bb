"""The ``models list|show|add|promote`` group (exported with the model stage's COMMANDS by model/commands.py)."""

from __future__ import annotations

import json

import click

from amberwatch.db import existing_db_path
from amberwatch.options import db_option


def _fmt(value: object, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


@click.group("models")
def models_group() -> None:
    """List, inspect and promote model versions (0 = the bundled model)."""


@models_group.command("list")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models_list(db: str, as_json: bool) -> None:
    """List model versions with their training counts, metrics and triage model; * marks the current one."""
    from amberwatch.model.metrics import cv_basis
    from amberwatch.model.registry import ModelRegistry

    with ModelRegistry.open(existing_db_path(db)) as registry:
        versions = registry.versions()
    if as_json:
        click.echo(json.dumps([v.as_dict() for v in versions], indent=2))
        return
    click.echo(
        f"{'':1} {'version':>7}  {'created':<25} {'mining':>6} {'not':>6} {'thresh':>6} {'cv_f1':>6} {'rev_acc':>7} "
        f"{'triage (thresh)':>17}  (cv_f1 at thresh) measured by; note"
    )
    for v in versions:
        cv = v.metrics.get("cv") or {}
        rev = (v.metrics.get("reviewed") or {}).get("accuracy")
        basis = cv_basis(cv) if cv.get("f1") is not None else "-"
        click.echo(
            f"{'*' if v.is_current else ' '} {v.version:>7}  {_fmt(v.created_at):<25} {_fmt(v.n_mining):>6} "
            f"{_fmt(v.n_not_mining):>6} {_fmt(cv.get('threshold')):>6} {_fmt(cv.get('f1')):>6} {_fmt(rev):>7} "
            f"{_triage_cell(v.triage):>17}  {basis}; {v.note or ''}"
        )


def _triage_cell(triage) -> str:
    """The triage model that goes with a version: its own or the bundled one, and its threshold."""
    if triage is None:
        return "-"
    return f"{'own' if triage.own else 'bundled'} ({_fmt(triage.threshold, 4)})"


@models_group.command("show")
@click.argument("version")
@db_option
def models_show(version: str, db: str) -> None:
    """Show one version's metadata, metrics and comparison with its parent, as JSON."""
    from amberwatch.model.registry import ModelRegistry

    with ModelRegistry.open(existing_db_path(db)) as registry:
        info = registry.get(version)
    click.echo(json.dumps(info.as_dict(), indent=2, sort_keys=True))


@models_group.command("promote")
@click.argument("version")
@db_option
def models_promote(version: str, db: str) -> None:
    """Make VERSION the current model (used by scans by default)."""
    from amberwatch.model.registry import ModelRegistry

    with ModelRegistry.open(existing_db_path(db)) as registry:
        info = registry.promote(version, forced=True, reason="promoted by hand")
    click.echo(f"Model version {info.version} is now current.")


@models_group.command("add")
@click.argument("model_file", type=click.Path(exists=True, dir_okay=False))
@db_option
@click.option("--promote", is_flag=True, help="Also make it the project's current model.")
@click.option("--note", default=None, help="Note shown by 'models list' [default: the file name].")
def models_add(model_file: str, db: str, promote: bool, note: str | None) -> None:
    """Register an existing model file (e.g. from 'train --no-register') as the project's next version."""
    from amberwatch.model.modelfile import load
    from amberwatch.model.registry import ModelRegistry

    clf = load(model_file)
    with ModelRegistry.open(db) as registry:
        info = registry.add(clf, note=note or f"added from {model_file}")
        if promote:
            registry.promote(info.version, reason="models add --promote")
    click.echo(
        f"registered {model_file} as model version {info.version} in {db!r}"
        + (" (now current)" if promote else f"; 'amberwatch models promote {info.version}' makes it current")
    )
