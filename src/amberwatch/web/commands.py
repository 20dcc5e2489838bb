"""CLI commands of the web stage (registered by amberwatch.cli): ``serve``, ``users`` and ``label suggest``."""

from __future__ import annotations

import ipaddress
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import click

from amberwatch.model.strategies import DEFAULT_SUGGEST_STRATEGY, SUGGEST_STRATEGIES
from amberwatch.options import ID, db_option
from amberwatch.project import Project


def _basemap_option(ctx: click.Context, param: click.Parameter, value: str | None) -> dict | None:
    """--basemap NAME -> the basemap config, or a usage error naming the preset."""
    if not value:
        return None
    from amberwatch.errors import InvalidInputError
    from amberwatch.web.layers import basemap_config

    try:
        return basemap_config(value)
    except InvalidInputError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def _trusted_proxy_option(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    """--trusted-proxy IP -> the IPs / networks, or a usage error naming a value that is neither."""
    for proxy in value:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise click.BadParameter(f"{proxy!r} is not an IP address or network", ctx=ctx, param=param) from None
    return value


def _cors_origin_option(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    """--cors-origin ORIGIN -> the origins as browsers send them, or a usage error naming a value that is not one."""
    from amberwatch.errors import InvalidInputError
    from amberwatch.web.guard import cors_origin

    try:
        return tuple(cors_origin(origin) for origin in value)
    except InvalidInputError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


@click.command()
@db_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="TCP port.")
@click.option(
    "--cache",
    "cache",
    type=click.Path(dir_okay=False),
    default=None,
    help="Tile cache file (default: <db stem>-tiles.sqlite beside the DB).",
)
@click.option(
    "--trusted-proxy",
    "trusted_proxies",
    multiple=True,
    callback=_trusted_proxy_option,
    metavar="IP",
    help="A reverse proxy in front of the app (an IP or a network such as 10.0.0.0/8; repeat for several): only "
    "from it is X-Forwarded-For taken as the reader's address, which rate limits count per reader. "
    "Default: none, the reader is the connecting address.",
)
@click.option(
    "--basemap",
    default=None,
    callback=_basemap_option,
    metavar="PRESET",
    help="An online basemap under the imagery: an xyzservices preset such as OpenStreetMap.Mapnik or "
    "Esri.WorldImagery (credited on the map). Default: none, the map loads nothing from outside.",
)
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    callback=_cors_origin_option,
    metavar="ORIGIN",
    help="The site of a static edition ('amberwatch publish --flag-endpoint' naming this server), such as "
    "https://news.example.org; repeat for several: its viewer may send readers' flags and reports here with the "
    "reader cookie (CORS on those endpoints only). Default: none, no CORS.",
)
def serve(
    db: str,
    host: str,
    port: int,
    cache: str | None,
    trusted_proxies: tuple[str, ...],
    basemap: dict | None,
    cors_origins: tuple[str, ...],
) -> None:
    """Serve the map, reviewer queue and labelling page (works offline unless --basemap is given)."""
    import uvicorn

    from amberwatch.web.app import create_app

    app = create_app(db, cache, basemap=basemap, build_overviews=True, cors_origins=cors_origins)
    click.echo(f"amberwatch map on http://{host}:{port}/  (Ctrl-C to stop)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", **proxy_options(trusted_proxies))


def proxy_options(trusted_proxies: Sequence[str]) -> dict:
    """uvicorn's options to take X-Forwarded-For from these proxies only (none: from nobody, the socket peer counts)."""
    if not trusted_proxies:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": list(trusted_proxies)}


@click.group()
def users() -> None:
    """Manage web users (reviewers)."""


@users.command("add")
@click.argument("name")
@click.option("--reviewer", is_flag=True, help="May review readers' flags and label chips.")
@db_option
def users_add(name: str, reviewer: bool, db: str) -> None:
    """Add a user and print its bearer token (shown once; only its hash is stored)."""
    from amberwatch.web.users import add_user

    with _users_db(db) as conn:
        token = add_user(conn, name, reviewer=reviewer)
    click.echo(token)


@users.command("rotate")
@click.argument("name")
@db_option
def users_rotate(name: str, db: str) -> None:
    """Give NAME a new bearer token and print it; the old token stops working at once."""
    from amberwatch.web.users import rotate_token

    with _users_db(db) as conn:
        click.echo(rotate_token(conn, name))


@users.command("revoke")
@click.argument("name")
@db_option
def users_revoke(name: str, db: str) -> None:
    """Revoke NAME's token: requests with it are refused ('users rotate NAME' issues a new one)."""
    from amberwatch.web.users import revoke_user

    with _users_db(db) as conn:
        revoke_user(conn, name)
    click.echo(f"Revoked the token of {name}.")


@contextmanager
def _users_db(db: str) -> Iterator[sqlite3.Connection]:
    """The existing project DB with the web tables ready (a mistyped --db must not start a new, empty project)."""
    from amberwatch.review.schema import SCHEMA

    with Project.open(db, create=False) as project:
        project.migrate(SCHEMA)
        yield project.conn


@users.command("list")
@db_option
def users_list(db: str) -> None:
    """List users and their roles."""
    from amberwatch.web.users import list_users

    with _users_db(db) as conn:
        for user in list_users(conn):
            click.echo(f"{user.name}\t{user.role}" + ("\trevoked" if user.revoked else ""))


@click.group("label")
def label() -> None:
    """Which tiles to label next (the /label page's queue, for scripts)."""


@label.command("suggest")
@db_option
@click.option("--scan", "scan_id", type=ID, required=True, help="Scan whose tiles to suggest.")
@click.option("--count", type=click.IntRange(min=1, max=1000), default=20, show_default=True, help="How many tiles.")
@click.option(
    "--strategy",
    type=click.Choice(SUGGEST_STRATEGIES),
    default=DEFAULT_SUGGEST_STRATEGY,
    show_default=True,
    help="uncertain: nearest the threshold (the learning curve's best); similar: like the scan's confirmed sites;"
    " spread: far apart over the area; random; mix: similar, uncertain and spread in turn.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")
def label_suggest(db: str, scan_id: int, count: int, strategy: str, as_json: bool) -> None:
    """The next tiles of a scan to label (not labelled or queued yet): z/x/y, lat/lon, P(mining), why chosen."""
    import json

    from amberwatch.web.labelling import suggest_for_scan

    with _users_db(db) as conn:
        found = suggest_for_scan(conn, scan_id, strategy, count)
    if as_json:
        click.echo(json.dumps(found.as_dict(), indent=2))
        return
    if found.note:
        click.secho(f"Note: {found.note}", fg="yellow", err=True)
    for t in found.tiles:
        click.echo(f"{t.z}/{t.x}/{t.y}\t{t.lat_deg:.5f}, {t.lon_deg:.5f}\tP {t.prob:.0%}\t{t.reason}")


COMMANDS: tuple[click.Command, ...] = (serve, users, label)
