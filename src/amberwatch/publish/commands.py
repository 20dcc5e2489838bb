"""CLI commands of the publish stage (registered by amberwatch.cli)."""

from __future__ import annotations

import click

from amberwatch.options import ID, db_option, out_option


@click.command("publish")
@db_option
@out_option("Folder to write the static edition into.", folder=True, required=True)
@click.option("--scan", "scan_id", type=ID, default=None, help="Scan id (default: the latest finished scan).")
@click.option(
    "--story",
    "story_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="A story folder 'amberwatch story build' wrote, copied under story/.",
)
@click.option(
    "--flag-endpoint",
    "flag_endpoint",
    default=None,
    help="Address of an 'amberwatch serve' taking readers' flags (default: none, flagging hidden).",
)
@click.option("--basemap", "basemap", default=None, help="xyzservices basemap preset under the imagery (default none).")
@click.option("--title", "title", default=None, help="Title of the map (default: the scan's name).")
@click.option("--force", is_flag=True, help="Publish into a folder that is not empty (earlier output replaced).")
def publish(
    db: str,
    out: str,
    scan_id: int | None,
    story_dir: str | None,
    flag_endpoint: str | None,
    basemap: str | None,
    title: str | None,
    force: bool,
) -> None:
    """Write the public map as static files: imagery as PMTiles, sites and place labels as GeoJSON, config.json.

    Any static host serves the folder; readers' flags go to --flag-endpoint when given.
    """
    from amberwatch.publish.edition import PublishOptions
    from amberwatch.publish.edition import publish as publish_edition

    options = PublishOptions(scan_id, story_dir, flag_endpoint, basemap, title, force)
    edition = publish_edition(db, out, options)
    for layer in edition.layers:
        a = layer.archive
        when = f" ({layer.scan.imagery_date})" if layer.scan.imagery_date else ""
        click.echo(
            f"Scan {layer.scan.id}{when}: {layer.imagery_file} ({a.n_tiles} tiles, zoom {a.min_zoom}-{a.max_zoom},"
            f" {'/'.join(a.formats)}), {layer.sites_file} ({len(layer.sites.sites)} sites)"
        )
    extra = ", story/" if edition.has_story else ""
    places = f"places.geojson ({edition.n_places} places)"
    locator = f", {edition.config['locator']}" if edition.config["locator"] else ""
    click.echo(f"Wrote {edition.out_dir}: index.html (the map), config.json, {places}{locator}, assets/{extra}")


COMMANDS: tuple[click.Command, ...] = (publish,)
