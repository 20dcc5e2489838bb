"""CLI commands of the scan stage: ``scan`` (run/resume; ``scan list``, ``scan report``) and ``detections export``."""

from __future__ import annotations

import json

import click

from amberwatch.options import db_option

COMMANDS: list[click.Command] = []


def _fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


@click.group("scan", invoke_without_command=True)
@click.option("--aoi", "aoi_path", type=click.Path(dir_okay=False), help="Area of interest: GeoJSON (Multi)Polygon file.")
@click.option("--bbox", help="Area of interest as W,S,E,N in degrees (instead of --aoi).")
@click.option("--imagery", help="Imagery: URL template, xyzservices preset, GeoTIFF, tile folder or .mbtiles.")
@click.option("--zoom", type=click.IntRange(0, 24), default=18, show_default=True, help="Web-map zoom to scan at.")
@db_option
@click.option("--workers", type=click.IntRange(1, 256), default=None, help="Worker processes [default: CPU cores].")
@click.option("--new", "new", is_flag=True, help="Start a new scan even if a matching unfinished one exists.")
@click.option("--dry-run", is_flag=True, help="Only print tile count, km² and estimated time.")
@click.option("--max-tiles", type=click.IntRange(1), default=None, help="Refuse AOIs with more tiles [default: 500,000].")
@click.option("--min-area-ha", type=click.FloatRange(0), default=None, help="Drop detections smaller than this [default: 0.05].")
@click.option("--model", "model_path", type=click.Path(dir_okay=False), help="Model file [default: the project's current model].")
@click.option("--cache", "cache_path", type=click.Path(dir_okay=False), help="Tile cache [default: <db stem>-tiles.mbtiles].")
@click.option("--capture-date", help="Capture date (YYYY-MM-DD) of imagery that does not carry one.")
@click.option("--api-key-env", help="Environment variable holding the imagery API key.")
@click.option("--name", help="A name for the scan.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar on stderr.")
@click.option("--dask", "dask_address", metavar="ADDRESS",
              help="Run on a Dask cluster: scheduler address (tcp://HOST:8786) or 'local' (--workers processes).")
@click.option("--worker-cache", help="With --dask: tile cache path as seen by each worker "
              "[default: the client's cache for 'local', ~/.cache/amberwatch/worker-tiles.mbtiles otherwise].")
@click.pass_context
def scan_group(ctx: click.Context, aoi_path, bbox, imagery, zoom, db, workers, new, dry_run, max_tiles, min_area_ha,
               model_path, cache_path, capture_date, api_key_env, name, progress, dask_address=None,
               worker_cache=None) -> None:
    """Scan an area tile by tile with the classifier (resumable); see also 'scan list' and 'scan report'."""
    if ctx.invoked_subcommand is not None:
        return
    from amberwatch.scan.aoi import aoi_from_bbox, load_aoi
    from amberwatch.scan.engine import (
        DEFAULT_MAX_TILES,
        DEFAULT_MIN_AREA_HA,
        ESTIMATED_TILES_PER_S_CACHED,
        ESTIMATED_TILES_PER_S_NETWORK,
        ScanSettings,
        plan_scan,
        run_scan,
    )

    if bool(aoi_path) == bool(bbox):
        raise click.UsageError("give exactly one of --aoi FILE or --bbox W,S,E,N")
    aoi = load_aoi(aoi_path) if aoi_path else aoi_from_bbox(bbox)
    max_tiles = max_tiles or DEFAULT_MAX_TILES
    if dry_run:
        plan = plan_scan(aoi, zoom, max_tiles=10**12)
        click.echo(f"AOI {aoi.name}: {plan.area_km2:.3f} km², {plan.tiles:,} tiles at zoom {zoom} "
                   f"({plan.tile_resolution_m_per_px:.2f} m/px at latitude {plan.center_lat_deg:.2f})")
        if plan.tiles > max_tiles:
            click.secho(f"Above the limit of {max_tiles:,} tiles: a scan needs --max-tiles {plan.tiles} or a "
                        "smaller AOI.", fg="yellow")
        click.echo(f"Estimated time: ~{_fmt_duration(plan.estimated_seconds(ESTIMATED_TILES_PER_S_NETWORK))} fetching "
                   f"over the network (~{ESTIMATED_TILES_PER_S_NETWORK:g} tiles/s), "
                   f"~{_fmt_duration(plan.estimated_seconds(ESTIMATED_TILES_PER_S_CACHED))} from a warm cache")
        return
    if not imagery:
        raise click.UsageError("--imagery is required (URL template, preset name, GeoTIFF, tile folder or .mbtiles)")
    options: dict = {}
    if capture_date:
        options["capture_date"] = capture_date
    if api_key_env:
        options["api_key_env"] = api_key_env
    settings = ScanSettings(
        workers=workers, new=new, max_tiles=max_tiles,
        min_area_ha=DEFAULT_MIN_AREA_HA if min_area_ha is None else min_area_ha,
        model_path=model_path, cache_path=cache_path, progress=progress, source_options=options, name=name,
        dask=dask_address, worker_cache=worker_cache,
    )
    events: dict[str, int] = {}
    out = run_scan(aoi, imagery, zoom, db, settings, on_event=lambda msg: click.echo(msg, err=True),
                   on_warnings=lambda counts: _merge(events, counts))
    for category, count in sorted(events.items()):
        what = _WARNING_TEXT.get(category, category)
        click.secho(f"Warning: {count} tile reads {what} (counting the neighbours read for context)", fg="yellow",
                    err=True)
    rate = out.tiles_processed_now / out.seconds if out.seconds > 0 else 0.0
    click.echo(
        f"Scan {out.scan_id} {'resumed and ' if out.resumed else ''}finished: {out.tiles_total:,} tiles "
        f"({out.tiles_done:,} done, {out.tiles_empty:,} without imagery, {out.tiles_failed:,} failed), "
        f"{out.area_scanned_km2:.2f} km² scanned in {_fmt_duration(out.seconds)} ({rate:.0f} tiles/s this run)."
    )
    click.echo(f"Detections: {out.detections} covering {out.detections_area_ha:.2f} ha.")
    first_error = _first_tile_error(db, out.scan_id) if out.tiles_failed else None
    if out.tiles_failed:
        click.secho(f"{out.tiles_failed} tiles failed (imagery errors); run the same command again to retry them.",
                    fg="yellow", err=True)
        click.secho(f"First error: {first_error}", fg="yellow", err=True)
    if out.tiles_failed and not (out.tiles_done or out.tiles_empty):
        from amberwatch.errors import ImageryError

        raise ImageryError(
            f"no tile of imagery {imagery!r} could be read ({out.tiles_failed} failed; first error: {first_error}). "
            f"Nothing is lost: check the source or the network, then run the same command again to resume scan "
            f"{out.scan_id}."
        )
    click.echo(f"Results are in {db} (scan {out.scan_id}).")
    click.echo(f"  Open the map:  amberwatch serve --db {db}")
    click.echo(f"  Export:        amberwatch detections export --db {db} --scan {out.scan_id} --format geojson "
               f"--out detections.geojson")
    click.echo(f"  Report:        amberwatch scan report --db {db} --scan {out.scan_id}")


_WARNING_TEXT = {
    "NoImageryWarning": "found no imagery (404 or outside the source's coverage)",
    "BlankTileWarning": "found a blank tile (uniform colour)",
    "MissingDateWarning": "had no capture date",
}


def _merge(into: dict[str, int], counts: dict[str, int]) -> None:
    for k, v in counts.items():
        into[k] = into.get(k, 0) + v


def _first_tile_error(db: str, scan_id: int) -> str | None:
    conn = _open_db(db)
    try:
        row = conn.execute(
            "SELECT error FROM scan_tiles WHERE scan_id = ? AND status = 'failed' LIMIT 1", (scan_id,)
        ).fetchone()
    finally:
        conn.close()
    return row[0] if row else None


def _open_db(db: str):
    from amberwatch.db import connect
    from amberwatch.results.schema import ensure_schema

    conn = connect(db, create=False)
    ensure_schema(conn)
    return conn


@scan_group.command("report")
@db_option
@click.option("--scan", "scan_id", type=int, default=None, help="Scan id [default: the latest].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def scan_report(db: str, scan_id: int | None, as_json: bool) -> None:
    """Print a scan's tiles, km² scanned, failed tiles, detections and total hectares."""
    from amberwatch.results.report import scan_summary
    from amberwatch.scan.engine import get_scan

    conn = _open_db(db)
    try:
        summary = scan_summary(conn, get_scan(conn, scan_id))
    finally:
        conn.close()
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    s = summary
    click.echo(f"Scan {s['scan_id']} ({s['status']}): {s['name']}")
    click.echo(f"  imagery      {s['imagery']} at zoom {s['zoom']}")
    click.echo(f"  model        version {s['model_version']} (threshold {s['model_threshold']:.2f})")
    click.echo(f"  started      {s['started_at']}   finished {s['finished_at'] or '-'}")
    click.echo(f"  tiles        {s['tiles_total']:,} total: {s['tiles_done']:,} done, {s['tiles_empty']:,} without "
               f"imagery, {s['tiles_failed']:,} failed")
    click.echo(f"  scanned      {s['area_scanned_km2']:.2f} km²")
    click.echo(f"  detections   {s['detections']} covering {s['detections_area_ha']:.2f} ha")
    for t in s["failed_tiles_sample"]:
        click.echo(f"  failed tile  z={t['z']} x={t['x']} y={t['y']} ({t['attempts']} attempts): {t['error']}")


@scan_group.command("list")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def scan_list(db: str, as_json: bool) -> None:
    """List the scans in the project DB, newest first."""
    from amberwatch.results.report import list_scans

    conn = _open_db(db)
    try:
        scans = list_scans(conn)
    finally:
        conn.close()
    if as_json:
        click.echo(json.dumps(scans, indent=2))
        return
    if not scans:
        click.echo("No scans yet.")
        return
    click.echo(f"{'id':>4}  {'status':<9} {'zoom':>4} {'model':>5} {'tiles':>9} {'failed':>6} {'km²':>9} "
               f"{'found':>5} {'ha':>9}  started")
    for s in scans:
        click.echo(f"{s['id']:>4}  {s['status']:<9} {s['zoom']:>4} {s['model_version']:>5} {s['tiles_total'] or 0:>9,} "
                   f"{s['tiles_failed']:>6} {s['area_scanned_km2']:>9.2f} {s['detections']:>5} "
                   f"{s['detections_area_ha']:>9.2f}  {s['started_at']}")


@click.group("detections")
def detections_group() -> None:
    """Detections found by scans: export them."""


@detections_group.command("export")
@db_option
@click.option("--format", "fmt", type=click.Choice(["geojson", "gpkg", "csv", "kml"]), default="geojson",
              show_default=True, help="Output format.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Output file.")
@click.option("--scan", "scan_id", type=int, default=None, help="Scan id [default: the latest scan].")
@click.option("--all-scans", is_flag=True, help="Export the detections of every scan.")
def detections_export(db: str, fmt: str, out: str, scan_id: int | None, all_scans: bool) -> None:
    """Export detections (polygons with area_ha) as GeoJSON, GeoPackage, CSV (WKT) or KML."""
    from amberwatch.results.export import export_detections
    from amberwatch.scan.engine import get_scan

    if all_scans and scan_id is not None:
        raise click.UsageError("give --scan or --all-scans, not both")
    conn = _open_db(db)
    try:
        chosen = None if all_scans else int(get_scan(conn, scan_id)["id"])
        n = export_detections(conn, fmt, out, scan_id=chosen)
    finally:
        conn.close()
    which = "all scans" if chosen is None else f"scan {chosen}"
    click.echo(f"Wrote {n} detections of {which} to {out} ({fmt}).")


COMMANDS.extend([scan_group, detections_group])
