"""CLI commands of the imagery stage (registered by amberwatch.cli)."""

from __future__ import annotations

import json
import math

import click

from amberwatch.errors import InvalidInputError
from amberwatch.options import db_option, out_option


def _parse_center(ctx: click.Context, param: click.Parameter, value: str) -> tuple[float, float]:
    """Parse LAT,LON into floats, as a Click usage error (exit 2) when malformed."""
    from amberwatch.imagery.georef import check_center

    try:
        lat_s, lon_s = value.replace(" ", "").split(",")
        lat, lon = float(lat_s), float(lon_s)
        check_center(lat, lon)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not LAT,LON in decimal degrees (e.g. 51.30,27.21)") from None
    except InvalidInputError as exc:
        raise click.BadParameter(str(exc)) from None
    return lat, lon


def _parse_resolution(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """Check the ground resolution, as a Click usage error (exit 2) when out of range."""
    from amberwatch.imagery.georef import check_resolution

    try:
        check_resolution(value)
    except InvalidInputError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


@click.group("imagery")
def imagery() -> None:
    """Imagery sources: inspect specs, list presets, georeference plain images."""


@imagery.command("from-image")
@click.argument("image", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--center", required=True, callback=_parse_center, metavar="LAT,LON", help="Centre of the image, WGS84 degrees."
)
@click.option(
    "--resolution",
    required=True,
    type=float,
    callback=_parse_resolution,
    metavar="M_PER_PX",
    help="Ground resolution of the image in metres per pixel (Texty's crops: ~0.38).",
)
@out_option("Output directory.", folder=True, required=True, dest="out_dir")
@click.option(
    "--zoom", type=click.IntRange(0, 24), default=None, help="Tile zoom (default: closest to the resolution)."
)
@click.option("--date", "capture_date", default=None, metavar="YYYY-MM-DD", help="Capture date of the image.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["both", "geotiff", "tiles"]),
    default="both",
    show_default=True,
    help="Write an EPSG:3857 GeoTIFF, a {z}/{x}/{y}.png folder, or both.",
)
def from_image(
    image: str,
    center: tuple[float, float],
    resolution: float,
    out_dir: str,
    zoom: int | None,
    capture_date: str | None,
    fmt: str,
) -> None:
    """Turn a plain IMAGE into a georeferenced local tile source; prints the spec to pass as --imagery."""
    from amberwatch.imagery.georef import georeference_image
    from amberwatch.imagery.sources import parse_capture_date

    try:
        parse_capture_date(capture_date, "--date")
    except InvalidInputError as exc:
        raise click.BadParameter(str(exc), param_hint="--date") from None
    result = georeference_image(
        image,
        center_lat_deg=center[0],
        center_lon_deg=center[1],
        resolution_m_per_px=resolution,
        out_dir=out_dir,
        zoom=zoom,
        capture_date=capture_date,
        write_geotiff=fmt in ("both", "geotiff"),
        write_tiles=fmt in ("both", "tiles"),
    )
    if result.geotiff_path is not None:
        click.echo(f"GeoTIFF: {result.geotiff_path} (EPSG:3857)", err=True)
    if result.tiles_dir is not None:
        click.echo(
            f"Tiles:   {result.tiles_dir} ({result.tile_count} tiles at z{result.zoom},"
            f" {result.resolution_m_per_px:.3f} m/px)",
            err=True,
        )
    b = result.bounds
    click.echo(f"Bounds:  {b.west_deg:.6f},{b.south_deg:.6f},{b.east_deg:.6f},{b.north_deg:.6f}", err=True)
    click.echo(result.spec)


@imagery.command("info")
@click.argument("spec")
@click.option("--api-key-env", default=None, help="Environment variable holding the API key for {key}.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(spec: str, api_key_env: str | None, as_json: bool) -> None:
    """Print the type, id, zoom range, bounds and resolution of an imagery SPEC (no tile is fetched)."""
    from amberwatch.imagery.open import open_source

    with open_source(spec, api_key_env=api_key_env) as src:
        d = src.describe()
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    bounds = d["bounds"]
    res = d["native_resolution_m_per_px"]
    rows = [
        ("type", d["type"]),
        ("source_id", d["source_id"]),
        ("spec", d["spec"]),
        ("zooms", f"{d['min_zoom']}..{d['max_zoom']}"),
        ("bounds", ",".join(f"{v:.6f}" for v in bounds) if bounds else "unknown (global)"),
        ("resolution", f"{res:.3f} m/px" if isinstance(res, float) and math.isfinite(res) else "per zoom"),
    ]
    if d.get("attribution"):
        rows.append(("attribution", d["attribution"]))
    for k, v in rows:
        click.echo(f"{k + ':':13}{v}")


@imagery.command("presets")
@click.option("--search", default=None, help="Only presets whose name contains TEXT (case-insensitive).")
def presets(search: str | None) -> None:
    """List xyzservices presets usable as --imagery NAME (those marked 'key' need --api-key-env)."""
    from amberwatch.imagery.xyz import search_presets

    found = search_presets(search)
    for p in found:
        click.echo(f"{p['name']}\t{'key' if p['needs_key'] else '-'}\tz{p['max_zoom'] or '?'}\t{p['url']}")
    if not found:
        click.echo(f"no preset matches {search!r}", err=True)


@imagery.command("releases")
@click.option("--aoi", "aoi_path", required=True, type=click.Path(dir_okay=False), help="GeoJSON (Multi)Polygon file.")
@click.option("--zoom", type=click.IntRange(0, 23), default=18, show_default=True, help="Zoom of the tiles compared.")
@db_option
@click.option("--refresh", is_flag=True, help="Fetch the Wayback release list again (new releases).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def releases(aoi_path: str, zoom: int, db: str, refresh: bool, as_json: bool) -> None:
    """List the Esri World Imagery Wayback releases whose imagery changed over an AOI (use as wayback:DATE).

    Asks the Wayback tilemap about up to 9 sample tiles of the AOI and keeps the releases whose tile differs from
    the release before; the release list and tiles are kept in the project's tile cache."""
    from amberwatch.imagery.aoi import load_aoi
    from amberwatch.imagery.cache import TileCache
    from amberwatch.imagery.wayback import changes_text, local_changes
    from amberwatch.project import tile_cache_path

    aoi = load_aoi(aoi_path)
    with TileCache(tile_cache_path(db)) as cache:
        changes, sampled = local_changes(aoi, zoom, cache=cache, refresh=refresh)
    if as_json:
        payload = {"zoom": zoom, "tiles_sampled": sampled, "releases": [c.to_json() for c in changes]}
        click.echo(json.dumps(payload, indent=2))
        return
    click.echo(f"{len(changes)} Wayback releases changed over {sampled} sample tiles of {aoi.name} at zoom {zoom}:")
    if changes:
        click.echo(changes_text(changes))


COMMANDS: tuple[click.Command, ...] = (imagery,)
