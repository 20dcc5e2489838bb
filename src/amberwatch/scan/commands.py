"""CLI commands of the scan stage: ``scan`` (run/resume), ``scan list|report|diff``, ``rescan``, ``similar``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from amberwatch.errors import ImageryError, InvalidInputError
from amberwatch.options import ID, OUTPUT_FILE, db_option, workers_option
from amberwatch.project import Project
from amberwatch.results.store import first_tile_error, get_scan, open_results
from amberwatch.scan.layers_commands import diff_command, rescan_command

# Exit codes of `amberwatch scan` (README, "Exit codes"): 0 all tiles read, 1 error (nothing or nothing more
# could be done; the scan is kept), 2 usage error, 3 finished but some tiles failed (run again to retry them).
EXIT_PARTIAL = 3


def _fmt_duration(seconds: float) -> str:
    seconds = round(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


@click.group("scan", invoke_without_command=True, commands=[diff_command])
@click.option(
    "--aoi", "aoi_path", type=click.Path(dir_okay=False), help="Area of interest: GeoJSON (Multi)Polygon file."
)
@click.option("--bbox", help="Area of interest as W,S,E,N in degrees (instead of --aoi).")
@click.option(
    "--imagery",
    help="Imagery: URL template, xyzservices preset, wayback:DATE|NUMBER (an Esri Wayback release), GeoTIFF, tile "
    "folder or .mbtiles.",
)
@click.option("--zoom", type=click.IntRange(0, 24), default=18, show_default=True, help="Web-map zoom to scan at.")
@db_option
@workers_option("Worker processes [default: CPU cores].", default=None, max_workers=256)
@click.option("--new", "new", is_flag=True, help="Start a new scan even if a matching unfinished one exists.")
@click.option("--dry-run", is_flag=True, help="Only print tile count, km² and estimated time.")
@click.option(
    "--int8/--fp32",
    "int8",
    default=None,
    help="Backbone precision for score maps [default: int8 when the model carries int8 ranges, as the bundled one "
    "does: about 2x faster, agreeing with fp32 windows as closely as fp32 maps do].",
)
@click.option(
    "--max-tiles", type=click.IntRange(1), default=None, help="Refuse AOIs with more tiles [default: 500,000]."
)
@click.option(
    "--min-area-ha", type=click.FloatRange(0), default=None, help="Drop detections smaller than this [default: 0.05]."
)
@click.option(
    "--model",
    "model_path",
    type=click.Path(dir_okay=False),
    help="Model file or registered version N (see 'models list') [default: the project's current model].",
)
@click.option(
    "--cache", "cache_path", type=click.Path(dir_okay=False), help="Tile cache [default: <db stem>-tiles.sqlite]."
)
@click.option("--capture-date", help="Capture date (YYYY-MM-DD) of imagery that does not carry one.")
@click.option(
    "--imagery-date",
    metavar="DATE|RELEASE",
    help="Date (YYYY, YYYY-MM, YYYY-MM-DD) or release name of the imagery: the same --imagery at another date is "
    "another scan with its own cached tiles; fills a URL template's {date}/{time} (not for wayback:, dated by its "
    "release) [default: undated, or the date a GeoTIFF/tile folder/MBTiles records].",
)
@click.option("--api-key-env", help="Environment variable holding the imagery API key.")
@click.option("--name", help="A name for the scan [default: the AOI file's stem].")
@click.option("--imagery-credit", help="Credit line shown on the public map, e.g. 'Drone survey © NGO 2018'.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar on stderr.")
@click.option("--yes", "-y", "yes", is_flag=True, help="Start a large scan (over 50,000 tiles) without asking.")
@click.option(
    "--tile-deadline",
    type=click.FloatRange(0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Longest one tile may take, all tries and waits included [default: 30].",
)
@click.option(
    "--dask",
    "dask_address",
    metavar="ADDRESS",
    help="Run on a Dask cluster: scheduler address (tcp://HOST:8786) or 'local' (--workers processes).",
)
@click.option(
    "--triage-zoom",
    type=click.IntRange(0, 23),
    default=None,
    help="First scan the AOI at this coarser zoom (17) with the triage model, then at --zoom only the tiles "
    "around coarse tiles above its recall-first threshold (README, 'Triage').",
)
@click.option(
    "--triage-model",
    type=click.Path(dir_okay=False),
    default=None,
    help="With --triage-zoom: the triage model file [default: the one retrain trained with the scan's model, else the "
    "bundled triage model].",
)
@click.option(
    "--triage-context",
    type=click.Choice(["exact", "coarse"]),  # scan.triage.CONTEXTS, without importing the engine at start-up
    default="coarse",
    show_default=True,
    help="With --triage-zoom: where the fine pass reads the tiles around its tiles. 'exact': at --zoom (the full "
    "scan's grids); 'coarse': at --zoom only around tiles triage saw warm, elsewhere the triage zoom's tiles "
    "upsampled (fewer requests, grids close to the full scan's; README, 'Triage').",
)
@click.option(
    "--worker-cache",
    help="With --dask: tile cache path as seen by each worker "
    "[default: the client's cache for 'local', ~/.cache/amberwatch/worker-tiles.sqlite otherwise].",
)
@click.pass_context
def scan_group(ctx: click.Context, **opts) -> None:
    """Scan an area tile by tile with the classifier (resumable); see also 'scan list' and 'scan report'."""
    if ctx.invoked_subcommand is not None:
        return
    from amberwatch.imagery.aoi import aoi_from_bbox, load_aoi
    from amberwatch.scan.engine import DEFAULT_MAX_TILES, DEFAULT_MIN_AREA_HA, ScanSettings

    if bool(opts["aoi_path"]) == bool(opts["bbox"]):
        raise click.UsageError("give exactly one of --aoi FILE or --bbox W,S,E,N")
    aoi = load_aoi(opts["aoi_path"]) if opts["aoi_path"] else aoi_from_bbox(opts["bbox"])
    max_tiles = opts["max_tiles"] or DEFAULT_MAX_TILES
    if opts["dry_run"]:
        _print_plan(aoi, opts["zoom"], max_tiles)
        return
    imagery, db = opts["imagery"], opts["db"]
    if not imagery:
        raise click.UsageError("--imagery is required (URL template, preset name, GeoTIFF, tile folder or .mbtiles)")
    if not opts["yes"]:
        _confirm_size(aoi, opts["zoom"], max_tiles)
    options = {k: opts[k] for k in ("capture_date", "api_key_env") if opts[k]}
    if opts["tile_deadline"] is not None:
        options["deadline_s"] = opts["tile_deadline"]
    settings = ScanSettings(
        workers=opts["workers"],
        new=opts["new"],
        max_tiles=max_tiles,
        min_area_ha=DEFAULT_MIN_AREA_HA if opts["min_area_ha"] is None else opts["min_area_ha"],
        model_path=opts["model_path"],
        cache_path=opts["cache_path"],
        progress=opts["progress"],
        source_options=options,
        imagery_date=opts["imagery_date"],
        name=opts["name"],
        imagery_credit=opts["imagery_credit"],
        dask=opts["dask_address"],
        worker_cache=opts["worker_cache"],
        int8=opts["int8"],
    )
    with Project.open(db) as project:
        out = _run(aoi, imagery, opts, project, settings)
        for category, count in sorted(out.warnings.items()):
            what = _WARNING_TEXT.get(category, category)
            click.secho(
                f"Warning: {count} tile reads {what} (counting the tiles read for context)", fg="yellow", err=True
            )
        _print_outcome(out, db, imagery, project)
    if out.tiles_failed:
        sys.exit(EXIT_PARTIAL)


def _run(aoi, imagery: str, opts: dict, project: Project, settings):
    """The scan, or with --triage-zoom both passes (the fine pass's outcome; the skipped tiles said)."""
    from amberwatch.scan.engine import run_scan
    from amberwatch.scan.triage import run_triage_scan

    say = lambda msg: click.echo(msg, err=True)  # noqa: E731
    if opts["triage_zoom"] is None:
        return run_scan(aoi, imagery, opts["zoom"], project, settings, on_event=say)
    both = run_triage_scan(
        aoi,
        imagery,
        opts["zoom"],
        project,
        settings,
        triage_zoom=opts["triage_zoom"],
        triage_model=opts["triage_model"],
        context=opts["triage_context"],
        on_event=say,
    )
    click.echo(
        f"Triage (scan {both.triage.scan_id}, zoom {opts['triage_zoom']}): {both.fine_tiles_kept:,} of "
        f"{both.fine_tiles_aoi:,} zoom-{opts['zoom']} tiles scanned ({both.fine_tiles_free:,} of them free: computed "
        f"by the passes the others need), {both.fine_tiles_skipped:,} skipped."
    )
    return both.fine


def _confirm_size(aoi, zoom: int, max_tiles: int) -> None:
    """Ask before a scan above CONFIRM_ABOVE_TILES (in a terminal); elsewhere refuse it without --yes."""
    from amberwatch.scan.engine import CONFIRM_ABOVE_TILES, ESTIMATED_TILES_PER_S_NETWORK, plan_scan

    plan = plan_scan(aoi, zoom, max_tiles=max_tiles)
    if plan.tiles <= CONFIRM_ABOVE_TILES:
        return
    what = (
        f"AOI {aoi.name!r} covers {plan.tiles:,} tiles ({plan.area_km2:,.1f} km²) at zoom {zoom}, about "
        f"{_fmt_duration(plan.estimated_seconds(ESTIMATED_TILES_PER_S_NETWORK))} over the network"
    )
    if sys.stdin is not None and sys.stdin.isatty():
        click.confirm(f"{what}. Start the scan?", abort=True, err=True)
        return
    raise InvalidInputError(
        f"{what}: a scan above {CONFIRM_ABOVE_TILES:,} tiles starts only when confirmed; pass --yes "
        "(check the area first with --dry-run)"
    )


def _print_plan(aoi, zoom: int, max_tiles: int) -> None:
    """--dry-run: area, tiles and estimated time, without fetching anything."""
    from amberwatch.scan.engine import (
        CONFIRM_ABOVE_TILES,
        ESTIMATED_TILES_PER_S_CACHED,
        ESTIMATED_TILES_PER_S_NETWORK,
        plan_scan,
    )

    plan = plan_scan(aoi, zoom, max_tiles=max_tiles, refuse=False)
    more = "more than " if plan.tiles_at_least else ""
    click.echo(
        f"AOI {aoi.name}: {plan.area_km2:,.3f} km², {more}{plan.tiles:,} tiles at zoom {zoom} "
        f"({plan.tile_resolution_m_per_px:.2f} m/px at latitude {plan.center_lat_deg:.2f})"
    )
    if plan.tiles > max_tiles:
        click.secho(
            f"Above the limit of {max_tiles:,} tiles: a scan needs --max-tiles {plan.tiles} or a smaller AOI.",
            fg="yellow",
        )
    elif plan.tiles > CONFIRM_ABOVE_TILES:
        click.secho(f"Above {CONFIRM_ABOVE_TILES:,} tiles: the scan asks for confirmation (or --yes).", fg="yellow")
    about = "at least " if plan.tiles_at_least else "~"
    click.echo(
        f"Estimated time: {about}{_fmt_duration(plan.estimated_seconds(ESTIMATED_TILES_PER_S_NETWORK))} fetching "
        f"over the network (~{ESTIMATED_TILES_PER_S_NETWORK:g} tiles/s), "
        f"{about}{_fmt_duration(plan.estimated_seconds(ESTIMATED_TILES_PER_S_CACHED))} from a warm cache"
    )


def _print_outcome(out, db: str, imagery: str, project: Project) -> None:
    """What a scan run did, its failures (ImageryError when no tile could be read) and what to do next."""
    rate = out.tiles_processed_now / out.seconds if out.seconds > 0 else 0.0
    click.echo(
        f"Scan {out.scan_id} {'resumed and ' if out.resumed else ''}finished: {out.tiles_total:,} tiles "
        f"({out.tiles_done:,} done, {out.tiles_empty:,} without imagery, {out.tiles_failed:,} failed), "
        f"{out.area_scanned_km2:.2f} km² scanned in {_fmt_duration(out.seconds)} ({rate:.0f} tiles/s this run)."
    )
    click.echo(f"Detections: {out.detections} covering {out.detections_area_ha:.2f} ha.")
    first_error = first_tile_error(project.conn, out.scan_id) if out.tiles_failed else None
    if out.tiles_failed:
        click.secho(
            f"{out.tiles_failed:,} of {out.tiles_total:,} tiles failed (imagery errors; a tile also fails when a "
            f"neighbour it needs for context does). Run the same command again to retry them: scan {out.scan_id} "
            f"resumes and redoes only the failed tiles (exit code {EXIT_PARTIAL} until none fail).",
            fg="yellow",
            err=True,
        )
        click.secho(f"First error: {first_error}", fg="yellow", err=True)
    if out.tiles_failed and not (out.tiles_done or out.tiles_empty):
        raise ImageryError(
            f"no tile of imagery {imagery!r} could be read and classified ({out.tiles_failed} failed; first error: "
            f"{first_error}). "
            f"Nothing is lost: check the source or the network, then run the same command again to resume scan "
            f"{out.scan_id}."
        )
    click.echo(f"Results are in {db} (scan {out.scan_id}).")
    click.echo(f"  Open the map:  amberwatch serve --db {db}")
    click.echo(
        f"  Export:        amberwatch detections export --db {db} --scan {out.scan_id} --format geojson "
        f"--out detections.geojson"
    )
    click.echo(f"  Report:        amberwatch scan report --db {db} --scan {out.scan_id}")


def _triage_text(triage: dict) -> str:
    """A scan's triage role in words: the coarse pass, or the fine tiles a triage scan let it skip."""
    if triage.get("role") == "triage":
        return "the coarse pass of a triaged scan (it chooses tiles; no detections of its own)"
    ring = f"{triage['ring_cells']} cells" if "ring_cells" in triage else f"{triage.get('ring_tiles')} tiles"
    free = f" ({triage['tiles_free']:,} of them free)" if "tiles_free" in triage else ""
    context = ""
    if triage.get("context") == "coarse":
        context = (
            f"; coarse context: {triage.get('tiles_read_fine', 0):,} tiles read at this zoom, the others' context "
            f"upsampled from zoom {triage.get('zoom')}"
        )
    return (
        f"after triage scan {triage.get('scan_id')} at zoom {triage.get('zoom')} (threshold "
        f"{triage.get('threshold')}, ring {ring}): {triage.get('tiles_kept', 0):,} of "
        f"{triage.get('tiles_aoi', 0):,} tiles scanned{free}, {triage.get('tiles_skipped', 0):,} skipped{context}"
    )


_WARNING_TEXT = {
    "NoImageryWarning": "found no imagery (404 or outside the source's coverage)",
    "BlankTileWarning": "found a blank tile (uniform colour)",
    "OversizedTileWarning": "refused an image far larger than a tile (a possible decompression bomb; failed)",
    "ResampledTileWarning": "found a tile that is not 256 x 256 px (resampled to fit)",
}


@scan_group.command("report")
@db_option
@click.option("--scan", "scan_id", type=ID, default=None, help="Scan id [default: the latest].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def scan_report(db: str, scan_id: int | None, as_json: bool) -> None:
    """Print a scan's tiles, km² scanned, failed tiles, detections and total hectares."""
    from amberwatch.results.report import scan_summary

    with open_results(db) as project:
        summary = scan_summary(project.conn, get_scan(project.conn, scan_id))
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    s = summary
    click.echo(f"Scan {s['scan_id']} ({s['status']}): {s['name']}")
    click.echo(f"  imagery      {s['imagery']} at zoom {s['zoom']}")
    click.echo(f"  model        version {s['model_version']} (threshold {s['model_threshold']:.2f})")
    click.echo(f"  started      {s['started_at']}   finished {s['finished_at'] or '-'}")
    click.echo(
        f"  tiles        {s['tiles_total']:,} total: {s['tiles_done']:,} done, {s['tiles_empty']:,} without "
        f"imagery, {s['tiles_failed']:,} failed"
    )
    click.echo(f"  scanned      {s['area_scanned_km2']:.2f} km²")
    click.echo(f"  detections   {s['detections']} covering {s['detections_area_ha']:.2f} ha")
    if s["triage"]:
        click.echo(f"  triage       {_triage_text(s['triage'])}")
    for category, count in sorted(s["warnings"].items()):
        click.echo(f"  warning      {count} tile reads {_WARNING_TEXT.get(category, category)}")
    for t in s["failed_tiles_sample"]:
        click.echo(f"  failed tile  z={t['z']} x={t['x']} y={t['y']} ({t['attempts']} attempts): {t['error']}")


@scan_group.command("list")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def scan_list(db: str, as_json: bool) -> None:
    """List the scans in the project DB, newest first."""
    from amberwatch.results.report import list_scans

    with open_results(db) as project:
        scans = list_scans(project.conn)
    if as_json:
        click.echo(json.dumps(scans, indent=2))
        return
    if not scans:
        click.echo("No scans yet.")
        return
    click.echo(
        f"{'id':>4}  {'status':<9} {'zoom':>4} {'model':>5} {'tiles':>9} {'failed':>6} {'km²':>9} "
        f"{'found':>5} {'ha':>9}  started"
    )
    for s in scans:
        click.echo(
            f"{s['id']:>4}  {s['status']:<9} {s['zoom']:>4} {s['model_version']:>5} {s['tiles_total'] or 0:>9,} "
            f"{s['tiles_failed']:>6} {s['area_scanned_km2']:>9.2f} {s['detections']:>5} "
            f"{s['detections_area_ha']:>9.2f}  {s['started_at']}"
        )


@click.command("similar")
@db_option
@click.option("--scan", "scan_id", type=ID, required=True, help="Scan whose tiles are searched.")
@click.option("--detection", "detections", type=ID, multiple=True, help="Detection to look like (repeatable).")
@click.option(
    "--image",
    "images",
    type=click.Path(dir_okay=False),
    multiple=True,
    help="Image file to look like, at the examples' resolution (repeatable).",
)
@click.option("--at", "points", multiple=True, help="LAT,LON of a scanned place to look like (repeatable).")
@click.option("--unlike", type=ID, multiple=True, help="Detection to look unlike (repeatable).")
@click.option("--top", type=click.IntRange(1, 1000), default=10, show_default=True, help="Places to list.")
@click.option(
    "--exclude-m",
    type=click.FloatRange(0),
    default=100.0,
    show_default=True,
    help="Leave out places this close to a query.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON list.")
@click.option("--geojson", "geojson_out", type=OUTPUT_FILE, help="Also write the places as GeoJSON.")
def similar_command(
    db: str,
    scan_id: int,
    detections,
    images,
    points,
    unlike,
    top: int,
    exclude_m: float,
    as_json: bool,
    geojson_out: str | None,
) -> None:
    """Rank the scanned places most like some detections, points or images (their mean; --unlike pushes away)."""
    from amberwatch.scan.similar import SimilarRequest, find_similar, parse_point, places_geojson

    request = SimilarRequest(scan_id, detections, images, tuple(parse_point(p) for p in points), unlike, top, exclude_m)
    with Project.open(db, create=False) as project:
        places = find_similar(project, request)
    if geojson_out:
        Path(geojson_out).write_text(json.dumps(places_geojson(places)), encoding="utf-8")
    if as_json:
        click.echo(json.dumps([p.as_dict() for p in places]))
        return
    click.echo(f"{'#':>3} {'score':>6} {'lat':>10} {'lon':>11}  {'tile':<18} {'tiles':>5}  detection")
    for p in places:
        det = "-" if p.detection_id is None else str(p.detection_id)
        click.echo(f"{p.rank:>3} {p.score:>6.3f} {p.lat:>10.6f} {p.lon:>11.6f}  {p.tile:<18} {p.tiles:>5}  {det}")


COMMANDS: tuple[click.Command, ...] = (scan_group, similar_command, rescan_command)
