"""CLI command of the correction loop: ``retrain`` (registered by amberwatch.cli)."""

from __future__ import annotations

import click

from amberwatch.errors import ConflictError
from amberwatch.options import db_option, folds_option, recipe_option, seed_option, workers_option
from amberwatch.project import Project


@click.command("retrain")
@db_option
@click.option("--force", is_flag=True, help="Promote the new model even if it compares worse than the current one.")
@seed_option("Seed of the CV folds and of training.")
@folds_option(min_folds=2)
@click.option(
    "--epochs", type=click.IntRange(min=1), default=None, help="Override the recipe's epochs (quicker, weaker)."
)
@click.option("--members", type=click.IntRange(min=1), default=None, help="Override the recipe's ensemble size.")
@workers_option("Processes training networks in parallel (at most the free CPU cores).")
@click.option(
    "--split-seeds",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Fold splits pooled for the candidate's threshold (the bundled model pools 5; each adds --folds heads).",
)
@click.option(
    "--f1-tolerance",
    type=click.FloatRange(min=0.0),
    default=0.02,
    show_default=True,
    help="CV F1 drop tolerated before refusing to promote.",
)
@click.option(
    "--local-weight",
    type=click.FloatRange(min=0.0),
    default=5.0,  # loop.retrain.DEFAULT_LOCAL_WEIGHT (this module loads no heavy library)
    show_default=True,
    help="Weight of each correction (review, /label) against an imported example in the pretrained head's training: "
    "a new place's own examples count more (measured: RESULTS.md round 12).",
)
@click.option(
    "--triage/--no-triage",
    default=True,
    show_default=True,
    help="Also train the new version's own triage model for 'scan --triage-zoom' (pretrained recipe; the same "
    "examples at half resolution, about as long again as the candidate's training); without one its scans triage "
    "with the bundled triage model.",
)
@recipe_option
def retrain_command(
    db: str,
    force: bool,
    seed: int,
    folds: int,
    epochs: int | None,
    members: int | None,
    workers: int,
    split_seeds: int,
    f1_tolerance: float,
    local_weight: float,
    triage: bool,
    recipe: str,
) -> None:
    """Train a new model version from the examples and reviewed corrections; promote it unless it is worse."""
    from amberwatch.loop.retrain import retrain
    from amberwatch.model.recipes import recipe_by_name

    with Project.open(db, create=False) as project:
        cache = str(project.feature_cache_path())
        chosen = recipe_by_name(recipe, epochs=epochs, members=members, feature_cache=cache)
        result = retrain(
            project,
            config=chosen,
            n_folds=folds,
            seed=seed,
            force=force,
            f1_tolerance=f1_tolerance,
            workers=workers,
            split_seeds=split_seeds,
            log=lambda m: click.echo(m, err=True),
            local_weight=local_weight,
            triage=triage,
        )
    click.echo(result.table())
    if not result.promoted:
        raise ConflictError(
            f"model version {result.candidate_version} was registered but not promoted: {'; '.join(result.reasons)}"
        )


COMMANDS: tuple[click.Command, ...] = (retrain_command,)
