"""CLI commands of the model stage (imported by amberwatch.cli): train, predict, evaluate and ``models``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from amberwatch.errors import AmberwatchError, InvalidInputError
from amberwatch.model.versions_commands import models_group
from amberwatch.options import (
    data_option,
    db_option,
    folds_option,
    out_option,
    recipe_option,
    seed_option,
    workers_option,
)
from amberwatch.project import Project


def _log(message: str) -> None:
    click.echo(message, err=True)


def _require_db(db: str) -> None:
    if not Path(db).is_file():
        raise InvalidInputError(f"database {db!r} does not exist (import examples first, or pass --data DIR)")


@click.command("train")
@db_option
@data_option("Train from a folder with positive/ and negative/ instead of the example store.")
@out_option("Also write the model to this file [default: only the registered version's file].")
@click.option("--promote", is_flag=True, help="Make the new version the project's current model (scans use it).")
@click.option(
    "--no-register", is_flag=True, help="Write --out only; do not register a version in the project database."
)
@seed_option()
@folds_option("Block-grouped CV folds used to set the threshold (0: skip CV, threshold 0.5).")
@click.option("--epochs", type=int, default=None, help="Override the recipe's epochs (quick runs).")
@click.option("--members", type=int, default=None, help="Override the recipe's ensemble size.")
@workers_option("Processes training networks in parallel (1 thread each; use the number of free cores).")
@recipe_option
def train_command(
    db: str,
    data_dir: str | None,
    out: str | None,
    promote: bool,
    no_register: bool,
    seed: int,
    folds: int,
    epochs: int | None,
    members: int | None,
    workers: int,
    recipe: str,
) -> None:
    """Train the classifier on the active examples (or --data) and register it as the project's next model version."""
    from amberwatch.model.recipes import recipe_by_name
    from amberwatch.model.train import train_with_cv

    register = not no_register and (data_dir is None or Path(db).is_file())
    if not register and out is None:
        raise InvalidInputError(
            f"the model would be neither registered (no project database {db!r}, or --no-register) nor written: "
            "pass --out FILE, or --db of an existing project"
        )
    if promote and not register:
        raise InvalidInputError("--promote needs a registered version: drop --no-register and give an existing --db")
    with Project.open(db) as project:
        data, where = _training_data(project, db, data_dir)
        _log(f"training on {len(data)} examples {data.counts()}")
        cache = str(project.feature_cache_path())
        chosen = recipe_by_name(recipe, epochs=epochs, members=members, feature_cache=cache)
        clf, _ = train_with_cv(data, chosen, seed=seed, n_folds=folds, log=_log, workers=workers)
        if clf.metadata.get("cv"):
            clf.metadata["cv"]["data"] = where
        click.echo(threshold_statement(clf))
        if register:
            _register_trained(clf, project, db, promote)
    if not register:
        clf.version = clf.metadata["fingerprint"][:8] + "-" + clf.metadata["created_at"].replace(":", "")[:17]
    if out:
        clf.save(out)
        click.echo(f"wrote {out}" + ("" if register else f" (not registered: 'amberwatch models add {out}' does)"))


def _training_data(project: Project, db: str, data_dir: str | None):
    """(chips, where they come from): the project's active examples, or the labelled folder ``data_dir``."""
    from amberwatch.model.dataset import load_folder, load_store

    if data_dir is not None:
        return load_folder(data_dir), f"{data_dir!r}"
    _require_db(db)
    return load_store(project), f"the example store {db!r}"


def threshold_statement(clf) -> str:
    """The model's one threshold and the F1 its CV measured there, saying on what data."""
    from amberwatch.model.metrics import cv_basis, f1_statement

    cv = clf.metadata.get("cv") or {}
    if not cv:
        return f"threshold {clf.threshold:.3f} (no cross-validation: --folds 0 keeps 0.5, nothing measured)"
    return f"CV {f1_statement(cv, cv_basis(cv))}"


def _register_trained(clf, project: Project, db: str, promote: bool) -> None:
    """Register a trained model in the project's registry (promoted if asked) and say how to use it."""
    from amberwatch.model.registry import ModelRegistry

    registry = project.store(ModelRegistry)
    info = registry.add(clf, note="train" + (" --promote" if promote else ""))
    if promote:
        registry.promote(info.version, reason="train --promote")
    current = registry.current_version()
    click.echo(f"registered model version {info.version} in {db!r} ({info.path})")
    scan = f"amberwatch scan --db {db} --model {info.version} --aoi AREA.geojson --imagery IMAGERY"
    if promote:
        click.echo(f"version {info.version} is now the project's current model: scans use it; next: {scan}")
    else:
        click.echo(
            f"not promoted (the project's current model is still version {current}); next: {scan}, "
            f"or make it the project's model: amberwatch models promote {info.version} --db {db}"
        )


@click.command("predict")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--model",
    "model_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Model file [default: the bundled model].",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per line.")
def predict_command(images: tuple[str, ...], model_path: str | None, as_json: bool) -> None:
    """Print P(mining) and the verdict at the model's threshold for each image file."""
    from amberwatch.imagery.decode import read_image_file
    from amberwatch.model.dataset import warn_if_not_a_chip
    from amberwatch.model.modelfile import load

    clf = load(model_path)
    if not as_json:
        _log(f"model {clf.version}: P(mining) >= {clf.threshold:.3f}, the threshold stored in the model, is mining")
    failed = 0
    for name in images:
        try:
            pixels = read_image_file(name)
            warn_if_not_a_chip(pixels, name)
            p = float(clf.predict_proba([pixels])[0])
        except AmberwatchError as exc:
            failed += 1
            click.secho(f"Error: {exc}", fg="red", err=True)
            continue
        verdict = "mining" if p >= clf.threshold else "not_mining"
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "file": name,
                        "p_mining": round(p, 4),
                        "verdict": verdict,
                        "threshold": round(clf.threshold, 4),
                        "model_version": clf.version,
                    }
                )
            )
        else:
            click.echo(f"{name}\t{p:.4f}\t{verdict}")
    if failed:
        sys.exit(1)


@click.command("evaluate")
@db_option
@data_option("Score a labelled folder (positive/, negative/) with --model instead of running CV.")
@click.option(
    "--model",
    "model_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Model file or registered version (N) for --data [default: the bundled model].",
)
@folds_option()
@click.option(
    "--split-seeds",
    type=click.IntRange(min=1),
    default=None,
    help="Fold splits pooled for the threshold [default: as train: 5 for pretrained, 1 for cnn].",
)
@seed_option()
@out_option(
    "Folder for metrics.json, pr_curve.png and the worst-errors contact sheet (CV mode).",
    folder=True,
    default="evaluation",
    dest="out_dir",
)
@click.option("--epochs", type=int, default=None, help="Override the recipe's epochs (quick runs).")
@workers_option("Processes training the fold networks in parallel.")
@click.option("--json", "as_json", is_flag=True, help="Print ONE JSON object.")
@recipe_option
def evaluate_command(
    db: str,
    data_dir: str | None,
    model_path: str | None,
    folds: int,
    split_seeds: int | None,
    seed: int,
    out_dir: str,
    epochs: int | None,
    workers: int,
    as_json: bool,
    recipe: str,
) -> None:
    """Block-grouped cross-validation on the store, or (--data) scoring of a labelled folder with a model."""
    from amberwatch.model.evaluate import evaluate_cv, evaluate_folder
    from amberwatch.model.registry import load_model_arg

    if data_dir is not None:
        result = evaluate_folder(load_model_arg(db, model_path), data_dir)
    else:
        from amberwatch.model.dataset import load_store
        from amberwatch.model.recipes import recipe_by_name

        _require_db(db)
        project = Project.open(db, create=False)
        chosen = recipe_by_name(recipe, epochs=epochs, feature_cache=str(project.feature_cache_path()))
        log = None if as_json else _log
        with project:
            data, where = load_store(project), f"the example store {db!r}"
        result = evaluate_cv(
            data,
            chosen,
            out_dir,
            n_folds=folds,
            seed=seed,
            log=log,
            workers=workers,
            split_seeds=split_seeds,
            data_name=where,
        )
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo("\n".join(_evaluation_lines(result, data_dir is not None)))


def _evaluation_lines(result: dict, on_folder: bool) -> list[str]:
    """evaluate's report: each F1 with its threshold and the data it was measured on."""
    from amberwatch.model.metrics import cv_basis, f1_statement

    if on_folder:
        best = result["best_f1_on_this_data"]
        lines = [
            f1_statement(result, f"{result['data']}; model {result['model_version']} as trained, no CV"),
            f"best F1 on this data {best['f1']:.3f} at threshold {best['threshold']:.3f} (a diagnostic: scans and "
            f"predict use the model's threshold {result['threshold']:.3f})",
        ]
        rest = result.get("not_trained_on")
        if rest:
            n = rest["n_positive"] + rest["n_negative"]
            lines.append(f"on the {n} it was not trained on: {f1_statement(rest, f'{n} examples')}")
    else:
        lines = [
            "CV " + f1_statement(result, cv_basis(result), "threshold"),
            "(`amberwatch train` with the same examples, --seed and --folds stores this threshold in its model; "
            "scans use the threshold stored in the model they run)",
        ]
    lines.append(f"average_precision: {result.get('average_precision')}")
    lines.append(f"confusion_matrix: {result['confusion_matrix']}")
    lines += [f"{kind}: {path}" for kind, path in (result.get("files") or {}).items()]
    return lines


COMMANDS: tuple[click.Command, ...] = (train_command, predict_command, evaluate_command, models_group)
