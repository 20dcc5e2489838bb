"""Flags from a static edition on another origin, in headless Chromium: the edition on a plain static server on
127.0.0.1:A, ``amberwatch serve``'s app on 127.0.0.1:B. With ``--cors-origin http://127.0.0.1:A`` a flag sent from
the page lands in the project DB under the reader's cookie (sent cross-origin with credentials; two ports of one
host are one site, so SameSite=Lax carries it); without it the page says in words that the flag was not sent."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from amberwatch.db import connect
from amberwatch.project import tile_cache_path
from amberwatch.publish.edition import PublishOptions, publish
from amberwatch.review.feedback import client_hash, reader_feedback
from amberwatch.web.app import create_app
from amberwatch.web.schema import client_salt
from tests.publish.rangeserver import range_server
from tests.publish.test_viewer_page_browser import VIEWPORTS, _open, _open_first_site
from tests.story.conftest import StoryFixture
from tests.web.conftest import LiveServer

pytestmark = pytest.mark.browser


@contextlib.contextmanager
def edition_and_serve(project: StoryFixture, tmp_path: Path, cors: bool) -> Iterator[tuple[str, Path]]:
    """A copy of the project, ``serve``d on one port (listing the edition's origin when ``cors``) and published with
    that server as its flag endpoint, on a static server on another port: (the edition's URL, the project DB)."""
    db = tmp_path / "project.db"
    shutil.copy(project.db, db)
    shutil.copy(project.cache, tile_cache_path(db))
    out = tmp_path / "site"
    out.mkdir()
    with range_server(out) as (base, _):
        origins = [base.rstrip("/")] if cors else []
        with LiveServer(create_app(db, tile_cache_path(db), cors_origins=origins)) as serve:
            publish(db, out, PublishOptions(flag_endpoint=serve.url))
            yield base, db


def _send_yes(page) -> tuple[int, str]:
    """Open the largest site's popup, answer "Yes, mining"; (the site's id, the message the page then shows)."""
    _open_first_site(page)
    site_id = page.evaluate("Number(document.querySelector('.popup').dataset.id)")
    page.click(".popup button.confirm")
    page.wait_for_function("!/^(Sending|$)/.test(document.querySelector('.popup .flag .msg').textContent)")
    return site_id, page.locator(".popup .flag .msg").inner_text()


@pytest.mark.slow
def test_a_flag_from_the_static_edition_lands_with_its_reader(browser, project: StoryFixture, tmp_path: Path) -> None:
    with edition_and_serve(project, tmp_path, cors=True) as (base, db):
        context, page = _open(browser, base, VIEWPORTS["desktop"])
        site_id, said = _send_yes(page)
        reader = next(c["value"] for c in context.cookies() if c["name"] == "aw_reader")
        page.reload()  # the reader's own answer comes back from serve with the cookie
        page.wait_for_function("document.body.dataset.ready === '1'")
        _open_first_site(page)
        page.wait_for_function("document.querySelector('.popup .flag .msg').textContent.startsWith('You answered')")
        errors = page.errors
        context.close()
        conn = connect(db)
        flag = reader_feedback(conn, site_id, client_hash(client_salt(conn), "reader\n" + reader))
        conn.close()
    assert said.startswith("Thanks — sent"), said
    assert not errors, errors
    assert flag is not None and flag["verdict"] == "confirmed" and flag["status"] == "pending"


def test_without_cors_the_page_says_the_flag_was_not_sent(browser, project: StoryFixture, tmp_path: Path) -> None:
    with edition_and_serve(project, tmp_path, cors=False) as (base, db):
        context, page = _open(browser, base, VIEWPORTS["desktop"])
        _, said = _send_yes(page)
        enabled = page.evaluate("!document.querySelector('.popup button.confirm').disabled")
        context.close()
        conn = connect(db)
        flags = conn.execute("SELECT COUNT(*) FROM web_feedback").fetchone()[0]
        conn.close()
    assert said.startswith("Not sent: the flag server (127.0.0.1:") and "cannot be reached" in said, said
    assert enabled and flags == 0  # the reader can try again; nothing was recorded
