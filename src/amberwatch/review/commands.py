"""CLI commands of the review stage (registered by amberwatch.cli): the ``detections`` group, which publishes the
detections as the public sees them (sites reviewed as not mining left out), and ``timeline``, which follows those
sites across the imagery dates of an AOI's scans."""

from __future__ import annotations

from pathlib import Path

import click

from amberwatch.db import writing
from amberwatch.options import ID, OUTPUT_FILE, db_option, out_option
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


class ScanIdsType(click.ParamType):
    """A comma-separated list of scan ids (``1,2,5``)."""

    name = "ids"

    def convert(self, value, param, ctx):  # type: ignore[override]
        """The ids as ints, or a usage error naming the text."""
        if isinstance(value, tuple):
            return value
        parts = [p.strip() for p in str(value).split(",") if p.strip()]
        if not parts or not all(p.isdigit() for p in parts):
            self.fail(f"{value!r} must be scan ids separated by commas, e.g. 1,2,5", param, ctx)
        return tuple(ID.convert(p, param, ctx) for p in parts)


@click.command("timeline")
@db_option
@click.option("--aoi", "aoi_path", type=click.Path(dir_okay=False), help="Only scans of this AOI (GeoJSON file).")
@click.option("--scans", "scan_ids", type=ScanIdsType(), help="Exactly these scans (ids 1,2,...), any zoom or model.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object {dates, sites}.")
@click.option("--geojson", "geojson_out", type=OUTPUT_FILE, help="Write the sites as GeoJSON here.")
@click.option("--csv", "csv_out", type=OUTPUT_FILE, help="Write the sites as CSV here.")
@click.option("--all", "include_removed", is_flag=True, help="Keep the sites reviewed as not mining.")
def timeline_command(db, aoi_path, scan_ids, as_json, geojson_out, csv_out, include_removed) -> None:
    """Sites followed across the imagery dates of an AOI's scans: hectares per date, first and last seen, status."""
    import json

    from amberwatch.imagery.aoi import load_aoi
    from amberwatch.results.timeline import load_timeline
    from amberwatch.review.feedback import review_states

    if aoi_path and scan_ids:
        raise click.UsageError("give --aoi or --scans, not both")
    aoi = load_aoi(aoi_path).to_geojson() if aoi_path else None
    with open_results(db) as project:
        conn = project.conn
        t = load_timeline(
            conn, review_states(conn), aoi_geojson=aoi, scan_ids=scan_ids, include_removed=include_removed
        )
    for note in t.notes:
        click.echo(f"note: {note}", err=True)
    if geojson_out:
        with writing(geojson_out, "timeline file"):
            Path(geojson_out).write_text(json.dumps(t.to_geojson()), encoding="utf-8")
    if csv_out:
        with writing(csv_out, "timeline file"):
            Path(csv_out).write_text(t.to_csv(), encoding="utf-8")
    if as_json:
        click.echo(json.dumps(t.to_dict()))
        return
    _print_timeline(t)


def _print_timeline(t) -> None:
    """The timeline as a plain table: one line per site, then counts by status."""
    click.echo(f"{'site':>8} {'status':<9} {'lon':>10} {'lat':>9}  " + " ".join(f"{d:>10}" for d in t.dates))
    for s in t.sites:
        areas = " ".join(f"{'-' if a is None else f'{a:.2f}':>10}" for a in s.area_ha.values())
        click.echo(f"{s.site_id:>8} {s.status:<9} {s.lon:>10.5f} {s.lat:>9.5f}  {areas}")
    counts = {k: sum(1 for s in t.sites if s.status == k) for k in dict.fromkeys(s.status for s in t.sites)}
    summary = ", ".join(f"{n} {k}" for k, n in counts.items()) or "no sites"
    click.echo(f"{len(t.sites)} sites over {len(t.dates)} dates (scans {', '.join(map(str, t.scan_ids))}): {summary}")


COMMANDS: tuple[click.Command, ...] = (detections_group, timeline_command)
