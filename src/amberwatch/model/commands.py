"""CLI commands of the model stage (registered by amberwatch.cli): train, predict, evaluate."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from amberwatch.errors import AmberwatchError, InvalidInputError
from amberwatch.options import db_option, recipe_option

COMMANDS: list[click.Command] = []


def _log(message: str) -> None:
    click.echo(message, err=True)


def _require_db(db: str) -> None:
    if not Path(db).is_file():
        raise InvalidInputError(f"database {db!r} does not exist (import examples first, or pass --data DIR)")


@click.command("train")
@db_option
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Train from a folder with positive/ and negative/ instead of the example store.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Model file to write [default: <db stem>-model.pt beside the database].",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--folds",
    type=int,
    default=5,
    show_default=True,
    help="Block-grouped CV folds used to set the threshold (0: skip CV, threshold 0.5).",
)
@click.option("--epochs", type=int, default=None, help="Override the recipe's epochs (quick runs).")
@click.option("--members", type=int, default=None, help="Override the recipe's ensemble size.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes training networks in parallel (1 thread each; use the number of free cores).",
)
@recipe_option
def train_command(
    db: str,
    data_dir: str | None,
    out: str | None,
    seed: int,
    folds: int,
    epochs: int | None,
    members: int | None,
    workers: int,
    recipe: str,
) -> None:
    """Train the classifier on the active examples and write ONE model file with its metadata."""
    from amberwatch.model.dataset import load_folder, load_store
    from amberwatch.model.features import feature_cache_path
    from amberwatch.model.recipes import recipe_by_name
    from amberwatch.model.train import train_with_cv

    if data_dir is None:
        _require_db(db)
        data = load_store(db)
    else:
        data = load_folder(data_dir)
    out_path = Path(out) if out else Path(db).with_name(Path(db).stem + "-model.pt")
    _log(f"training on {len(data)} examples {data.counts()}")
    chosen = recipe_by_name(recipe, epochs=epochs, members=members, feature_cache=str(feature_cache_path(db)))
    clf, _ = train_with_cv(data, chosen, seed=seed, n_folds=folds, log=_log, workers=workers)
    clf.version = clf.metadata["fingerprint"][:8] + "-" + clf.metadata["created_at"].replace(":", "")[:17]
    clf.save(out_path)
    cv = clf.metadata.get("cv") or {}
    summary = {k: cv.get(k) for k in ("precision", "recall", "f1", "average_precision")}
    click.echo(f"wrote {out_path} (version {clf.version}, threshold {clf.threshold:.3f}, CV {summary})")


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
    from amberwatch.model.modelfile import load

    clf = load(model_path)
    failed = 0
    for name in images:
        try:
            p = float(clf.predict_proba([read_image_file(name)])[0])
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
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Score a labelled folder (positive/, negative/) with --model instead of running CV.",
)
@click.option(
    "--model",
    "model_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Model file for --data [default: the bundled model].",
)
@click.option("--folds", type=int, default=5, show_default=True, help="Block-grouped CV folds.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default="evaluation",
    show_default=True,
    help="Folder for metrics.json, pr_curve.png and the worst-errors contact sheet (CV mode).",
)
@click.option("--epochs", type=int, default=None, help="Override the recipe's epochs (quick runs).")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes training the fold networks in parallel.",
)
@click.option("--json", "as_json", is_flag=True, help="Print ONE JSON object.")
@recipe_option
def evaluate_command(
    db: str,
    data_dir: str | None,
    model_path: str | None,
    folds: int,
    seed: int,
    out_dir: str,
    epochs: int | None,
    workers: int,
    as_json: bool,
    recipe: str,
) -> None:
    """Block-grouped cross-validation on the store, or (--data) scoring of a labelled folder with a model."""
    from amberwatch.model.evaluate import evaluate_cv, evaluate_folder
    from amberwatch.model.modelfile import load

    if data_dir is not None:
        result = evaluate_folder(load(model_path), data_dir)
    else:
        from amberwatch.model.dataset import load_store
        from amberwatch.model.features import feature_cache_path
        from amberwatch.model.recipes import recipe_by_name

        _require_db(db)
        chosen = recipe_by_name(recipe, epochs=epochs, feature_cache=str(feature_cache_path(db)))
        result = evaluate_cv(
            load_store(db), chosen, out_dir, n_folds=folds, seed=seed, log=None if as_json else _log, workers=workers
        )
    if as_json:
        click.echo(json.dumps(result))
        return
    for key in ("precision", "recall", "f1", "average_precision", "threshold", "n_positive", "n_negative"):
        click.echo(f"{key}: {result.get(key)}")
    click.echo(f"confusion_matrix: {result['confusion_matrix']}")
    for kind, path in (result.get("files") or {}).items():
        click.echo(f"{kind}: {path}")


COMMANDS += [train_command, predict_command, evaluate_command]
