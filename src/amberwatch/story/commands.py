"""CLI commands of the story stage (registered by amberwatch.cli)."""

from __future__ import annotations

import click

from amberwatch.options import ID, db_option, out_option


@click.group("story")
def story() -> None:
    """Build static story pages from an article and the detections."""


@story.command("build")
@click.argument("article", type=click.Path(dir_okay=False))
@db_option
@out_option("Folder to write the page into.", folder=True, required=True)
@click.option("--scan", "scan_id", type=ID, default=None, help="Scan id (default: the latest finished scan).")
@click.option(
    "--cache",
    "cache",
    type=click.Path(dir_okay=False),
    default=None,
    help="Tile cache (default: <db stem>-tiles.sqlite beside the DB; older projects: -tiles.mbtiles).",
)
@click.option("--then", "then", default=None, help="Earlier imagery date of the pairs (default: the first).")
@click.option("--now", "now", default=None, help="Later imagery date of the pairs (default: the last).")
@click.option(
    "--pair",
    "pair_sites",
    type=ID,
    multiple=True,
    help="Timeline site id to show then and now (repeatable; default: the sites with most hectares dug).",
)
@click.option("--pairs", "n_pairs", type=int, default=None, help="How many then-and-now pairs (default: 2).")
@click.option("--map-url", "map_url", default=None, help="Address of the live map the story links to (http or https).")
def build(
    article: str,
    db: str,
    out: str,
    scan_id: int | None,
    cache: str | None,
    then: str | None,
    now: str | None,
    pair_sites: tuple[int, ...],
    n_pairs: int | None,
    map_url: str | None,
) -> None:
    """Build a self-contained story folder (index.html, assets, fragments, tiles) from ARTICLE.md.

    A project scanned at two or more imagery dates also gets then-and-now pairs and its headline figures.
    """
    from amberwatch.story.builder import build_story
    from amberwatch.story.captions import plural
    from amberwatch.story.change import ChangeChoice, pair_count

    change = ChangeChoice(then, now, tuple(pair_sites), pair_count(n_pairs))
    result = build_story(article, db, out, scan_id=scan_id, cache_path=cache, change=change, map_url=map_url)
    if scan_id is None and result.scan_id is not None:
        click.echo(f"Scan {result.scan_id}, the latest finished one (choose another with --scan).", err=True)
    origins = ", ".join(f"{n} from {k}" for k, n in sorted(result.fragment_origins.items()))
    click.echo(
        f"Wrote {result.index_html}: {plural(len(result.fragment_ids), 'fragment')} ({origins}), "
        f"{plural(result.n_map_sites, 'site')} on the map, {plural(result.n_tiles, 'map tile')}"
    )
    if result.headline:
        click.echo(f"Then and now: {result.headline} ({plural(len(result.pair_ids), 'pair')})")
    if result.basemap:
        click.echo(f"The map loads the online basemap {result.basemap} (the rest of the page works offline).", err=True)


COMMANDS: tuple[click.Command, ...] = (story,)
