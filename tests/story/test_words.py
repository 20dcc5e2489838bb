"""The story's figures and words: hectares as the map rounds them, plurals, the imagery credit, the link to the
live map and the inline favicon."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from amberwatch.cli import main
from amberwatch.db import connect
from amberwatch.errors import AmberwatchWarning, InvalidInputError
from amberwatch.story.builder import build_story, find_external_urls
from amberwatch.story.captions import format_hectares, plural
from tests.story.conftest import StoryFixture, write_article


def _data(folder: Path) -> dict:
    text = (folder / "data.js").read_text("utf-8")
    return json.loads(text[len("window.AMBER_STORY = ") :].rstrip().rstrip(";"))


def test_hectares_rounded_like_the_map() -> None:
    """web/static/common.js ha(): x >= 100 ? x.toFixed(0) : x.toFixed(2); toFixed rounds exact halves up."""
    values = (1.83, 0.425, 0.125, 3.1, 12.345678, 99.996, 100.5, 127.4)
    assert [format_hectares(v) for v in values] == [
        "1.83 ha",
        "0.42 ha",  # 0.425 is 0.42499999... as a float, as in JS
        "0.13 ha",
        "3.10 ha",
        "12.35 ha",
        "100.00 ha",
        "101 ha",
        "127 ha",
    ]
    assert plural(1, "fragment") == "1 fragment" and plural(2, "fragment") == "2 fragments"


def test_one_fragment_in_singular(story_data: StoryFixture, tmp_path: Path) -> None:
    article = write_article(tmp_path, [story_data.cached_ids[0]])
    out = tmp_path / "site"
    args = ["story", "build", str(article), "--db", str(story_data.db), "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "1 fragment (" in result.output and "1 fragments" not in result.output
    assert "1 fragment in this story" in (out / "index.html").read_text("utf-8")


def _with_credit(story_data: StoryFixture, folder: Path, imagery: str, credit: str | None) -> Path:
    """A copy of the fixture whose scan reads `imagery` with the given stored credit."""
    db = folder / "credited.db"
    shutil.copyfile(story_data.db, db)
    shutil.copyfile(story_data.cache, folder / "credited-tiles.sqlite")
    conn = connect(db)
    params = json.dumps({"imagery_credit": credit} if credit else {})
    conn.execute("UPDATE scans SET name = 'aoi.geojson', imagery = ?, params_json = ?", (imagery, params))
    conn.close()
    return db


def test_credit_names_the_provider_once(story_data: StoryFixture, tmp_path: Path) -> None:
    db = _with_credit(story_data, tmp_path, "https://tiles.example/{z}/{x}/{y}.png", "Imagery: Maxar via Example")
    build_story(write_article(tmp_path, list(story_data.cached_ids[:2])), db, tmp_path / "site")
    page = (tmp_path / "site" / "index.html").read_text("utf-8")
    assert "Imagery: Maxar via Example." in page and "Imagery: Imagery" not in page
    assert "aoi" not in page.split('<footer class="story-footer">')[1]  # never the AOI file name
    assert _data(tmp_path / "site")["attribution"] == "Imagery: Maxar via Example · Sites: amberwatch"


def test_no_provider_is_said_and_warned(story_data: StoryFixture, tmp_path: Path) -> None:
    db = _with_credit(story_data, tmp_path, "https://tiles.example/{z}/{x}/{y}.png", None)
    with pytest.warns(AmberwatchWarning, match=r"scan 1 names no imagery provider.*--imagery-credit"):
        build_story(write_article(tmp_path, list(story_data.cached_ids[:2])), db, tmp_path / "site")
    footer = (tmp_path / "site" / "index.html").read_text("utf-8").split('<footer class="story-footer">')[1]
    assert "Imagery: provider not stated." in footer and "scan aoi" not in footer


def test_links_to_the_live_map(story_data: StoryFixture, tmp_path: Path) -> None:
    url = "https://map.example.org/?scan=1&zoom=12"
    build_story(write_article(tmp_path, list(story_data.cached_ids[:2])), story_data.db, tmp_path / "site", map_url=url)
    page = (tmp_path / "site" / "index.html").read_text("utf-8")
    assert '<a href="https://map.example.org/?scan=1&amp;zoom=12">Explore every site on the live map</a>' in page
    assert find_external_urls(tmp_path / "site", allowed=(url, url.replace("&", "&amp;"))) == []
    build_story(write_article(tmp_path, list(story_data.cached_ids[:2])), story_data.db, tmp_path / "plain")
    assert "live map" not in (tmp_path / "plain" / "index.html").read_text("utf-8")
    with pytest.raises(InvalidInputError, match="javascript:alert"):
        build_story(tmp_path / "article.md", story_data.db, tmp_path / "bad", map_url="javascript:alert(1)")


def test_favicon_inline(built_story: Path) -> None:
    page = (built_story / "index.html").read_text("utf-8")
    assert '<link rel="icon" href="data:image/svg+xml,' in page
    assert find_external_urls(built_story) == []
