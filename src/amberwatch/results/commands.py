"""CLI commands of the results stage (registered by amberwatch.cli): the ``area`` group."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import click

from amberwatch.db import writing
from amberwatch.errors import InvalidInputError
from amberwatch.options import ID, MAX_SQLITE_INT, db_option, seed_option
from amberwatch.project import Project
from amberwatch.results.area_estimate import (
    estimate_area,
    format_table,
    journalist_sentence,
    read_counts_csv,
    sample_size_for_target_se,
)
from amberwatch.results.area_review import (
    estimate_for_scan,
    import_reference_csv,
    list_samples,
)
from amberwatch.results.area_store import SCHEMA as AREA_SCHEMA
from amberwatch.results.change_units import CHANGE_STRATA
from amberwatch.results.sampling import (
    ALLOCATIONS,
    DEFAULT_MIN_PER_STRATUM,
    EXPORT_FORMATS,
    draw_change_sample,
    draw_sample,
    export_sample,
    load_sample,
    parse_accuracy_option,
)


@contextlib.contextmanager
def _area_db(db: str) -> Iterator[sqlite3.Connection]:
    """The existing project DB (one connection for the command) with the results and area-sample tables ready."""
    with Project.open(db, create=False) as project:
        project.migrate(AREA_SCHEMA)
        yield project.conn


def _float_list(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InvalidInputError(f"{what} {text!r} must be comma-separated numbers") from None


@click.group("area")
def area() -> None:
    """Measure the mined area with an error-adjusted estimate and 95% interval (Olofsson et al. 2014)."""


@area.command("sample")
@click.option("--scan", "scan_id", type=ID, help="Scan id whose map is assessed.")
@click.option("--change", is_flag=True, help="Sample the change between two dated scans of one AOI and zoom.")
@click.option("--from-scan", "from_scan", type=ID, help="With --change: the scan of the earlier date.")
@click.option("--to-scan", "to_scan", type=ID, help="With --change: the scan of the later date.")
@click.option("--n", "n", type=click.IntRange(min=1), help="Total number of sample units (cells).")
@click.option("--target-se", type=float, help="Instead of --n: target standard error of overall accuracy (eq. 13).")
@click.option("--allocation", type=click.Choice(ALLOCATIONS), default="proportional", show_default=True)
@seed_option("Random seed (stored; same seed, same sample).", default=None, kind=click.IntRange(0, MAX_SQLITE_INT))
@click.option(
    "--buffer-m",
    type=click.FloatRange(min=0),
    help="Add a buffer stratum: non-mining cells within this many metres of mining cells.",
)
@click.option(
    "--users-accuracy",
    "accuracy",
    help="Anticipated user's accuracy per stratum (optimal allocation, --target-se), "
    "e.g. mining=0.7,buffer=0.8,not_mining=0.98 (with --change: new, stable, gone, no_mining).",
)
@click.option("--min-per-stratum", type=click.IntRange(min=2), default=DEFAULT_MIN_PER_STRATUM, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the sample as JSON.")
@db_option
def sample_cmd(
    scan_id,
    change,
    from_scan,
    to_scan,
    n,
    target_se,
    allocation,
    seed,
    buffer_m,
    accuracy,
    min_per_stratum,
    as_json,
    db,
) -> None:
    """Draw a stratified random sample of the scan's map cells (or of the change between two scans) for review."""
    _check_sample_options(scan_id, change, from_scan, to_scan, n, target_se, buffer_m)
    with _area_db(db) as conn:
        if change:
            s = draw_change_sample(
                conn,
                from_scan,
                to_scan,
                n,
                allocation=allocation,
                seed=seed,
                anticipated_accuracy=parse_accuracy_option(accuracy, CHANGE_STRATA),
                min_per_stratum=min_per_stratum,
            )
        else:
            s = draw_sample(
                conn,
                scan_id,
                n,
                allocation=allocation,
                seed=seed,
                buffer_m=buffer_m,
                anticipated_accuracy=parse_accuracy_option(accuracy),
                min_per_stratum=min_per_stratum,
                target_se=target_se,
            )
    _print_sample(s, as_json)


def _check_sample_options(scan_id, change, from_scan, to_scan, n, target_se, buffer_m) -> None:
    """UsageError unless the options name one scan, or with --change two scans and --n."""
    if change:
        if from_scan is None or to_scan is None or scan_id is not None:
            raise click.UsageError("--change takes --from-scan and --to-scan (not --scan)")
        if n is None or target_se is not None or buffer_m is not None:
            raise click.UsageError("--change takes --n (not --target-se or --buffer-m)")
        return
    if scan_id is None or from_scan is not None or to_scan is not None:
        raise click.UsageError("give --scan, or --change with --from-scan and --to-scan")
    if (n is None) == (target_se is None):
        raise click.UsageError("give exactly one of --n or --target-se")


def _print_sample(s, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(s.to_dict(), indent=2))
        return
    what = f"scan {s.scan_id}" if s.from_scan_id is None else f"the change from scan {s.from_scan_id} to {s.scan_id}"
    click.echo(
        f"sample {s.sample_id} of {what}: {sum(p.n_units for p in s.strata)} units "
        f"({s.allocation} allocation, seed {s.seed})"
    )
    for p in s.strata:
        click.echo(f"  {p.stratum:<11} {p.cell_count:>10,} cells {p.area_ha:>12,.2f} ha  -> {p.n_units} units")
    fill = "reference_class" if s.from_scan_id is None else "reference_from and reference_to (each date)"
    click.echo(
        f"next: amberwatch area export --sample {s.sample_id} --format csv, fill {fill}, "
        f"then amberwatch area import-reference --sample {s.sample_id} FILE.csv"
    )


@area.command("sample-size")
@click.option(
    "--users-accuracy", "accuracy", required=True, help="Anticipated user's accuracy per class, e.g. 0.7,0.6,0.9,0.95."
)
@click.option("--weights", required=True, help="Mapped area share per class (same order, sums to 1).")
@click.option("--target-se", type=float, required=True, help="Target standard error of overall accuracy, e.g. 0.01.")
def sample_size_cmd(accuracy, weights, target_se) -> None:
    """Total sample size for a target standard error (Olofsson et al. 2014 eq. 13)."""
    n = sample_size_for_target_se(_float_list(accuracy, "users accuracy"), _float_list(weights, "weights"), target_se)
    click.echo(str(n))


@area.command("export")
@click.option("--sample", "sample_id", type=ID, required=True)
@click.option("--format", "fmt", type=click.Choice(EXPORT_FORMATS), default="geojson", show_default=True)
@click.option("--blind", is_flag=True, help="Leave out the map class and probability (for reviewers).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Write here instead of stdout.")
@db_option
def export_cmd(sample_id, fmt, blind, output, db) -> None:
    """Export a sample's units as GeoJSON squares or a CSV review sheet."""
    with _area_db(db) as conn:
        text = export_sample(conn, sample_id, fmt, blind=blind)
    if output:
        with writing(output, "export file"):
            Path(output).write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=not text.endswith("\n"))


@area.command("import-reference")
@click.option("--sample", "sample_id", type=ID, required=True)
@click.option("--reviewed-by", help="Reviewer name stored with each label (default: import:<file name>).")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@db_option
def import_reference_cmd(sample_id, reviewed_by, file, db) -> None:
    """Record reference classes (mining, not_mining or no_imagery) from a CSV with header unit_id,reference_class."""
    with _area_db(db) as conn:
        r = import_reference_csv(conn, sample_id, file, reviewed_by)
    click.echo(
        f"recorded {r['recorded']} reference classes for sample {sample_id}"
        + (f"; {r['skipped_blank']} rows left blank" if r["skipped_blank"] else "")
        + (
            f"; {r['no_imagery']} units without imagery, {r['replaced']} replacement units added "
            f"(export the sample again to review them)"
            if r["no_imagery"]
            else ""
        )
    )


@area.command("estimate")
@click.option("--scan", "scan_id", type=ID, help="Scan id (uses its latest sample unless --sample).")
@click.option("--sample", "sample_id", type=ID, help="Sample id (a change sample reports the change).")
@click.option(
    "--counts",
    type=click.Path(exists=True, dir_okay=False),
    help="Estimate from a counts table instead: map_class,mapped_area_ha,<reference class>,...",
)
@click.option("--json", "as_json", is_flag=True)
@db_option
def estimate_cmd(scan_id, sample_id, counts, as_json, db) -> None:
    """Error-adjusted area per class with 95% intervals, accuracies and the error matrix (of change for a change
    sample: hectares newly dug between its two dates)."""
    if counts:
        if scan_id is not None or sample_id is not None:
            raise click.UsageError("--counts cannot be combined with --scan/--sample")
        estimate, info = estimate_area(read_counts_csv(counts)), {"counts_file": counts}
    else:
        if scan_id is None and sample_id is None:
            raise click.UsageError("give --scan and/or --sample, or --counts")
        with _area_db(db) as conn:
            if scan_id is None:
                scan_id = load_sample(conn, sample_id).scan_id
            estimate, info = estimate_for_scan(conn, scan_id, sample_id)
    sentence = info.get("sentence") or journalist_sentence(estimate)
    if as_json:
        click.echo(json.dumps({**estimate.to_dict(), **info, "sentence": sentence}, indent=2))
        return
    if info.get("change"):
        click.echo(
            f"change from scan {info['from_scan_id']} ({info['from_date']}) to scan {info['to_scan_id']} "
            f"({info['to_date']}), sample {info['sample_id']}: area per change class (new: newly dug)"
        )
    if "units" in info and info["reviewed"] < info["units"]:
        click.echo(f"note: {info['units'] - info['reviewed']} of {info['units']} sample units are not reviewed yet")
    click.echo(format_table(estimate, sentence))


@area.command("list")
@click.option("--scan", "scan_id", type=ID, help="Only samples of this scan.")
@click.option("--json", "as_json", is_flag=True)
@db_option
def list_cmd(scan_id, as_json, db) -> None:
    """List area samples with their review progress."""
    with _area_db(db) as conn:
        rows = list_samples(conn, scan_id)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no area samples" + (f" for scan {scan_id}" if scan_id is not None else ""))
    for r in rows:
        click.echo(
            f"sample {r['sample_id']:>4}  scan {r['scan_id']:>4}  {r['created_at']}  {r['allocation']:<12} "
            f"reviewed {r['reviewed']}/{r['units']}"
        )


COMMANDS: tuple[click.Command, ...] = (area,)
