"""CLI commands of the review stage (registered by amberwatch.cli): the ``detections`` group, which publishes the
detections as the public sees them (sites reviewed as not mining left out)."""

from __future__ import annotations

import click

from amberwatch.options import ID, db_option, out_option
from amberwatch.results.store import get_scan, open_results


@click.group("detections")
def detections_group() -> None:
    """Detections found by scans: export them."""


@detections_group.command("export")
@db_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["geojson", "gpkg", "csv", "kml"]),
    default="geojson",
    show_default=True,
    help="Output format.",
)
@out_option("Output file.", required=True)
@click.option("--scan", "scan_id", type=ID, default=None, help="Scan id [default: the latest scan].")
@click.option("--all-scans", is_flag=True, help="Export the detections of every scan.")
def detections_export(db: str, fmt: str, out: str, scan_id: int | None, all_scans: bool) -> None:
    """Export detections (polygons with area_ha) as GeoJSON, GeoPackage, CSV (WKT) or KML."""
    from amberwatch.results.export import export_detections
    from amberwatch.review.feedback import review_states

    if all_scans and scan_id is not None:
        raise click.UsageError("give --scan or --all-scans, not both")
    with open_results(db) as project:
        conn = project.conn
        chosen = None if all_scans else get_scan(conn, scan_id).id
        n = export_detections(conn, fmt, out, reviews=review_states(conn), scan_id=chosen)
    which = "all scans" if chosen is None else f"scan {chosen}"
    click.echo(f"Wrote {n} detections of {which} to {out} ({fmt}).")


COMMANDS: tuple[click.Command, ...] = (detections_group,)
