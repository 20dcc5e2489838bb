"""CLI commands of result layers: ``rescan`` and ``scan diff`` (exported by scan/commands.py: ``rescan`` in its
COMMANDS, ``diff`` in its ``scan`` group)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from amberwatch.options import ID, db_option


@click.command("rescan")
@click.argument("scan_id", metavar="SCAN", type=ID)
@click.option(
    "--model", "model_version", required=True, help="Registered model version (see 'amberwatch models list')."
)
@db_option
@click.option(
    "--cache",
    "cache_path",
    type=click.Path(dir_okay=False),
    help="Tile cache [default: the scan's, else <db stem>-tiles.sqlite].",
)
@click.option(
    "--min-area-ha",
    type=click.FloatRange(0),
    default=None,
    help="Drop detections smaller than this [default: the scan's].",
)
@click.option(
    "--triage-model",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="For a scan made with --triage-zoom: the triage model file to triage again with [default: the one that "
    "goes with --model, see 'models list'].",
)
def rescan_command(
    scan_id: int,
    model_version: str,
    db: str,
    cache_path: str | None,
    min_area_ha: float | None,
    triage_model: str | None,
) -> None:
    """Re-classify finished scan SCAN with another model version from the tile cache (no download) into a new layer;
    a layer scanned after triage is triaged again with the version's triage model where that changes the pass."""
    from amberwatch.scan.rescan import rescan

    out = rescan(
        db,
        scan_id,
        model_version,
        cache_path=cache_path,
        min_area_ha=min_area_ha,
        on_event=lambda msg: click.echo(msg, err=True),
        triage_model=triage_model,
    )
    click.echo(
        f"Scan {out.scan_id} (rescan of scan {out.parent_scan_id} with model v{out.model_version}): "
        f"{out.tiles_rescanned:,} tiles re-classified from the cache, "
        f"{out.tiles_copied:,} empty/failed tiles carried over"
        + (
            f", {out.tiles_missing_from_cache:,} missing from the cache (failed)"
            if out.tiles_missing_from_cache
            else ""
        )
        + "."
    )
    if out.triage:
        click.echo(f"After {out.triage}.")
    click.echo(f"Detections: {out.detections} covering {out.detections_area_ha:.2f} ha.")
    click.echo(f"  Compare:  amberwatch scan diff {out.parent_scan_id} {out.scan_id} --db {db}")


@click.command("diff")
@click.argument("scan_a", metavar="A", type=ID)
@click.argument("scan_b", metavar="B", type=ID)
@db_option
@click.option("--geojson", "geojson_out", type=click.Path(dir_okay=False), help="Also write the sites as GeoJSON here.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON instead of a table.")
def diff_command(scan_a: int, scan_b: int, db: str, geojson_out: str | None, as_json: bool) -> None:
    """Compare result layers A (before) and B (after): sites added, removed, grown or shrunk, hectares."""
    from amberwatch.results.diff import diff_layers
    from amberwatch.results.store import open_results

    with open_results(db) as project:
        d = diff_layers(project.conn, scan_a, scan_b)
    if as_json:
        click.echo(json.dumps(d.summary(), indent=2))
    else:
        click.echo(d.table())
    if geojson_out:
        Path(geojson_out).write_text(json.dumps(d.to_geojson()), encoding="utf-8")
        click.echo(f"Wrote {len(d.sites)} sites to {geojson_out}.", err=True)
