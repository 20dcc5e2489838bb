"""CLI commands of the labels stage (registered by amberwatch.cli): ``amberwatch examples ...``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from amberwatch.db import resolve_db_path
from amberwatch.errors import DatabaseError
from amberwatch.labels.boxes import import_boxes
from amberwatch.labels.importer import export_folder, import_folder
from amberwatch.labels.store import CATEGORIES, LABELS, ExampleStore
from amberwatch.options import ID, db_option

TOP_BLOCKS_SHOWN = 10


def _open(db: str, *, create: bool) -> ExampleStore:
    path = resolve_db_path(db)
    if not create and not path.exists():
        raise DatabaseError(f"project database {str(path)!r} does not exist (import examples first)")
    return ExampleStore.open(path)


@click.group("examples")
def examples() -> None:
    """Labelled example crops (mining / not_mining) used to train and evaluate the model."""


@examples.command("import")
@click.argument("folder", type=click.Path(file_okay=False))
@db_option
@click.option("--source", default="import", show_default=True, help="Source tag stored with each example.")
@click.option("--added-by", default="cli", show_default=True, help="Who added the examples.")
def import_cmd(folder: str, db: str, source: str, added_by: str) -> None:
    """Import FOLDER/positive (or mining) and FOLDER/negative (or not_mining) image crops.

    Texty names LAT_LON_DD_Mon_YYYY_GMT_super_N.png give position and date; a sub-folder named
    after a category (negative/quarry/) sets the category. Unreadable files are reported and skipped.
    """
    with _open(db, create=True) as store:
        report = import_folder(store, folder, source=source, added_by=added_by)
    for line in report.summary_lines():
        click.echo(line)


@examples.command("import-boxes")
@click.argument("boxes_csv", type=click.Path(dir_okay=False))
@click.option(
    "--images",
    "images_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder the CSV's image paths are relative to.",
)
@db_option
@click.option("--source", default="boxes", show_default=True, help="Source tag stored with each example.")
@click.option("--added-by", default="cli", show_default=True, help="Who added the examples.")
def import_boxes_cmd(boxes_csv: str, images_dir: str, db: str, source: str, added_by: str) -> None:
    """Cut labelled rectangles out of whole images and import them as examples.

    BOXES_CSV has columns image,x0_px,y0_px,x1_px,y1_px,label[,category]; crops of one whole image
    share one cross-validation group. Boxes that cannot be cut are reported and skipped.
    """
    with _open(db, create=True) as store:
        report = import_boxes(store, boxes_csv, images_dir, source=source, added_by=added_by)
    for line in report.summary_lines():
        click.echo(line)


@examples.command("stats")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=None,
    help=f"Place blocks to show [default: {TOP_BLOCKS_SHOWN} as text, all as JSON].",
)
def stats_cmd(db: str, as_json: bool, top: int | None) -> None:
    """Counts of examples by label, category, year and 0.1-degree place block."""
    with _open(db, create=False) as store:
        stats = store.stats(top_blocks=top if (top or as_json) else TOP_BLOCKS_SHOWN)
    if as_json:
        click.echo(json.dumps(stats, indent=2))
        return
    click.echo(f"examples: {stats['total']} (active {stats['active']}, excluded {stats['excluded']})")
    click.echo("active by label: " + ", ".join(f"{k} {v}" for k, v in stats["by_label"].items()))

    def pairs(title: str, table: dict[str, dict[str, int]]) -> None:
        click.echo(title)
        for key, counts in table.items():
            click.echo(f"  {key:<14} mining {counts['mining']:>5}  not_mining {counts['not_mining']:>5}")

    pairs("by category:", stats["by_category"])
    pairs("by imagery year:", stats["by_year"])
    click.echo(
        f"place blocks (0.1 degree, or source image when not located): {stats['blocks']}"
        f" ({stats['blocks_with_mining']} with mining); source images: {stats['source_images']};"
        f" located examples: {stats['located']}"
    )
    pairs(f"top {len(stats['by_block'])} blocks:", stats["by_block"])


@examples.command("exclude")
@db_option
@click.option("--id", "ids", type=ID, multiple=True, help="Example id (repeatable).")
@click.option("--category", type=click.Choice(CATEGORIES), help="Exclude every active example of this category.")
@click.option(
    "--area", type=click.Path(exists=True, dir_okay=False), help="GeoJSON polygons: exclude located examples inside."
)
@click.option("--reason", required=True, help="Why (stored with each excluded example).")
def exclude_cmd(db: str, ids: tuple[int, ...], category: str | None, area: str | None, reason: str) -> None:
    """Exclude examples from training by id, category or area (they stay in the store)."""
    given = [name for name, value in (("--id", ids), ("--category", category), ("--area", area)) if value]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --id, --category or --area")
    with _open(db, create=False) as store:
        n = store.exclude(ids=list(ids) or None, category=category, area_geojson=area, reason=reason)
    click.echo(f"excluded {n} example{'s' if n != 1 else ''}")


@examples.command("list")
@db_option
@click.option("--label", type=click.Choice(LABELS), default=None, help="Only this label.")
@click.option("--status", type=click.Choice(["active", "excluded", "all"]), default="active", show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Rows to show.")
def list_cmd(db: str, label: str | None, status: str, limit: int) -> None:
    """A small table of examples."""
    with _open(db, create=False) as store:
        rows = store.examples(status=None if status == "all" else status, label=label)
    header = (
        f"{'id':>6}  {'label':<10} {'category':<10} {'status':<8} {'lat':>9} {'lon':>9}  "
        f"{'date':<10} {'size':>9}  {'source':<10} block"
    )
    click.echo(header)
    for ex in rows[:limit]:
        lat = f"{ex.lat:.4f}" if ex.lat is not None else "-"
        lon = f"{ex.lon:.4f}" if ex.lon is not None else "-"
        size = f"{ex.width}x{ex.height}"
        click.echo(
            f"{ex.id:>6}  {ex.label:<10} {ex.category or '-':<10} {ex.status:<8} {lat:>9} {lon:>9}"
            f"  {ex.imagery_date or '-':<10} {size:>9}  {ex.source:<10} {ex.block_key}"
        )
    click.echo(f"{min(limit, len(rows))} of {len(rows)} shown")


@examples.command("export")
@click.argument("folder", type=click.Path(file_okay=False))
@db_option
@click.option("--label", type=click.Choice(LABELS), default=None, help="Only this label.")
@click.option("--by-category", is_flag=True, help="Put negatives with a category in negative/<category>/.")
def export_cmd(folder: str, db: str, label: str | None, by_category: bool) -> None:
    """Write active examples to FOLDER/positive and FOLDER/negative as PNG files (Texty names when located)."""
    with _open(db, create=False) as store:
        counts = export_folder(store, Path(folder), label=label, by_category=by_category)
    click.echo(
        f"exported {counts['mining']} mining to {Path(folder) / 'positive'},"
        f" {counts['not_mining']} not_mining to {Path(folder) / 'negative'}"
    )


COMMANDS: tuple[click.Command, ...] = (examples,)
