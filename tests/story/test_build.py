"""Building the story folder through the CLI: files, self-containment, fallbacks and clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from amberwatch.cli import main
from amberwatch.db import connect
from amberwatch.errors import AmberwatchWarning, NotFoundError
from amberwatch.results.store import ensure_schema
from amberwatch.story.builder import build_story, find_external_urls
from tests.story.conftest import REPO, StoryFixture, write_article


def _data(folder: Path) -> dict:
    text = (folder / "data.js").read_text("utf-8")
    assert text.startswith("window.AMBER_STORY = ")
    return json.loads(text[len("window.AMBER_STORY = ") :].rstrip().rstrip(";"))


def test_cli_builds_example_article(story_data: StoryFixture, tmp_path: Path) -> None:
    out = tmp_path / "site"
    result = CliRunner().invoke(
        main, ["story", "build", str(REPO / "examples" / "story.md"), "--db", str(story_data.db), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "Wrote" in result.output and "12 fragments" in result.output
    page = (out / "index.html").read_text("utf-8")
    assert "The lunar landscape of Polissia" in page
    assert "going to the amber" in page  # the article's text, rendered from Markdown
    assert "<em>leprosy</em>" in page
    images = list((out / "fragments").glob("*.webp"))
    assert len(images) >= 12
    assert all(Image.open(p).format == "WEBP" for p in images)
    assert find_external_urls(out) == []
    data = _data(out)
    # Largest 12 of the scan, largest first; no '--cache' so the default cache beside the DB was used.
    areas = [f["caption"] for f in data["fragments"]]
    assert len(areas) == 12
    assert data["tiles"]["keys"], "map tiles exported from the cache"
    for key in data["tiles"]["keys"]:
        assert (out / "tiles" / f"{key}.jpg").is_file()
    assert (out / "assets" / "leaflet" / "leaflet.js").is_file()
    assert len(data["sites"]["features"]) == 12
    # Every site on the map is a fragment: the legend names no "other detections".
    assert "12 fragments in this story" in page and "other detection" not in page


def test_no_external_urls_anywhere(built_story: Path) -> None:
    texts = [p for p in built_story.rglob("*") if p.suffix in (".html", ".js", ".css")]
    assert len(texts) >= 5
    for p in texts:
        text = p.read_text("utf-8")
        assert "http://" not in text and "https://" not in text, p


def test_page_structure(built_story: Path, story_data: StoryFixture) -> None:
    page = (built_story / "index.html").read_text("utf-8")
    for fid in story_data.cached_ids:
        assert f'data-site="{fid}"' in page
    assert page.count('loading="lazy"') == len(story_data.cached_ids) + 1
    assert page.count("<button") >= len(story_data.cached_ids)
    assert "srcset=" in page and "sizes=" in page
    assert "Klesiv forest" in page  # place name from the front matter
    assert "5 Oct 2015" in page  # capture date in the captions
    assert 'alt="Satellite image of a suspected amber-mining site' in page
    # Paragraphs and fragment blocks interleave: text before the first block and after the last one.
    first_block, last_block = page.index('class="frag-block"'), page.rindex('class="frag-block"')
    assert page.index("Nobody here calls it mining") < first_block
    assert page.index("The map at the end shows") > last_block
    data = _data(built_story)
    by_id = {f["id"]: f for f in data["fragments"]}
    assert by_id[story_data.thumbnail_only_id]["bounds"] is None  # a thumbnail's footprint is unknown
    assert by_id[story_data.cached_ids[0]]["bounds"] is not None
    assert data["view"] == {"center": [51.3, 26.905], "zoom": 14.0}


def test_fallbacks_thumbnail_and_placeholder(story_data: StoryFixture, tmp_path: Path) -> None:
    article = write_article(tmp_path, [story_data.cached_ids[0], story_data.thumbnail_only_id, story_data.bare_id])
    with pytest.warns(AmberwatchWarning, match=f"detection {story_data.bare_id}"):
        result = build_story(article, story_data.db, tmp_path / "site")
    assert result.fragment_origins == {"cache": 1, "thumbnail": 1, "placeholder": 1}


def test_without_cache_uses_thumbnails(story_data: StoryFixture, tmp_path: Path) -> None:
    db = tmp_path / "copy.db"
    shutil.copyfile(story_data.db, db)  # no cache beside this copy
    article = write_article(tmp_path, list(story_data.cached_ids[:3]))
    with pytest.warns(AmberwatchWarning, match="no tile cache"):
        result = build_story(article, db, tmp_path / "site")
    assert result.fragment_origins == {"thumbnail": 3}
    assert result.n_tiles == 0
    assert find_external_urls(tmp_path / "site") == []


def test_external_links_become_text(story_data: StoryFixture, tmp_path: Path) -> None:
    article = write_article(tmp_path, list(story_data.cached_ids[:3]))
    article.write_text(
        article.read_text("utf-8").replace("byline: Amberwatch test desk", "byline: Texty, https://texty.org.ua")
        + "\nSee [Texty's story](https://texty.org.ua/d/amber/) and http://example.org.\n",
        "utf-8",
    )
    with pytest.warns(AmberwatchWarning) as record:
        build_story(article, story_data.db, tmp_path / "site")
    messages = " ".join(str(w.message) for w in record)
    assert "texty.org.ua/d/amber" in messages and "front matter addresses" in messages
    page = (tmp_path / "site" / "index.html").read_text("utf-8")
    assert "Texty&rsquo;s story" in page and "texty.org.ua/d/amber" in page
    assert "Texty, texty.org.ua" in page
    assert find_external_urls(tmp_path / "site") == []


def test_marker_places_blocks(story_data: StoryFixture, tmp_path: Path) -> None:
    article = tmp_path / "m.md"
    article.write_text(
        "---\ntitle: Marked\nfragments: [1, 2, 3]\n---\n"
        "First paragraph.\n\nSecond paragraph.\n\n[[fragments]]\n\nThird.\n",
        "utf-8",
    )
    build_story(article, story_data.db, tmp_path / "site")
    page = (tmp_path / "site" / "index.html").read_text("utf-8")
    assert page.index("Second paragraph") < page.index('class="frag-block"') < page.index("Third.")
    assert "[[fragments]]" not in page


def _cli(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, ["story", "build", *args])
    return r.exit_code, r.output


def test_clear_errors(story_data: StoryFixture, tmp_path: Path) -> None:
    db = str(story_data.db)
    out = str(tmp_path / "out")
    code, text = _cli(str(tmp_path / "missing.md"), "--db", db, "--out", out)
    assert code == 1 and "missing.md" in text
    bad = tmp_path / "bad.md"
    bad.write_text("---\ntitle: T\nfragments: biggest 4\n---\nText.\n", "utf-8")
    code, text = _cli(str(bad), "--db", db, "--out", out)
    assert code == 1 and "biggest 4" in text
    unknown = write_article(tmp_path, [1, 999, 998], name="unknown.md")
    code, text = _cli(str(unknown), "--db", db, "--out", out)
    assert code == 1 and "999" in text and "998" in text
    code, text = _cli(str(write_article(tmp_path, [1], name="s.md")), "--db", db, "--out", out, "--scan", "42")
    assert code == 1 and "scan 42" in text
    code, text = _cli(str(write_article(tmp_path, [1], name="d.md")), "--db", str(tmp_path / "no.db"), "--out", out)
    assert code == 1 and "no.db" in text
    code, text = _cli(
        str(write_article(tmp_path, [1], name="c.md")), "--db", db, "--out", out, "--cache", str(tmp_path / "x.mbtiles")
    )
    assert code == 1 and "x.mbtiles" in text
    code, _ = _cli(str(unknown), "--db", db)
    assert code == 2  # --out is required: Click's usage error


def test_no_detections(tmp_path: Path) -> None:
    db = tmp_path / "empty.db"
    conn = connect(db)
    ensure_schema(conn)
    conn.close()
    article = write_article(tmp_path, "largest 5")
    with pytest.raises(NotFoundError, match="no detections"):
        build_story(article, db, tmp_path / "site")


def test_scan_choice(story_data: StoryFixture, tmp_path: Path) -> None:
    db = tmp_path / "running.db"
    shutil.copyfile(story_data.db, db)
    shutil.copyfile(story_data.cache, tmp_path / "running-tiles.mbtiles")
    conn = connect(db)
    conn.execute("UPDATE scans SET status = 'running', finished_at = NULL")
    conn.close()
    article = write_article(tmp_path, "most confident 4")
    # No finished scan: all detections are candidates.
    result = build_story(article, db, tmp_path / "all")
    assert result.scan_id is None and len(result.fragment_ids) == 4
    assert result.fragment_origins == {"cache": 4}
    # An explicit scan is used even while running; its most confident detections come first.
    result = build_story(article, db, tmp_path / "one", scan_id=1)
    assert result.scan_id == 1
    assert list(result.fragment_ids) == sorted(result.fragment_ids, reverse=True)  # prob grows with id here


def test_fragment_at_the_edge_of_the_imagery_is_cut_to_it(story_data: StoryFixture, tmp_path: Path) -> None:
    import math

    import mercantile

    from tests.story.conftest import PATCHES, ZOOM, _insert, _polygon

    db = tmp_path / "edge.db"
    shutil.copyfile(story_data.db, db)
    shutil.copyfile(story_data.cache, tmp_path / "edge-tiles.mbtiles")
    t0 = mercantile.tile(PATCHES[0][1], PATCHES[0][2], ZOOM)
    west = mercantile.bounds(t0.x, t0.y, ZOOM).west
    lat = mercantile.bounds(t0.x, t0.y + 2, ZOOM).north
    lon = west + 45 / (111_320 * math.cos(math.radians(lat)))  # 45 m inside the imagery's west edge
    conn = connect(db)
    edge_id = _insert(conn, _polygon(lon, lat, 60, seed=5), lat, lon, 0.9, thumb=None)
    conn.close()
    article = write_article(tmp_path, [edge_id, story_data.cached_ids[0]])
    result = build_story(article, db, tmp_path / "site")
    assert result.fragment_origins == {"cache": 2}
    frag = next(f for f in _data(tmp_path / "site")["fragments"] if f["id"] == edge_id)
    (south, w), (north, e) = frag["bounds"]
    assert w >= west - 1e-6  # no black margin beyond the imagery
    assert (e - w) * math.cos(math.radians(lat)) < (north - south)  # narrower than tall: the margin was cut


def test_explicit_ids_from_an_older_scan(story_data: StoryFixture, tmp_path: Path) -> None:
    db = tmp_path / "two.db"
    shutil.copyfile(story_data.db, db)
    conn = connect(db)
    conn.execute(
        "INSERT INTO scans (id, aoi_geojson, imagery, imagery_source_id, zoom, model_version, model_threshold,"
        " status, started_at, finished_at) SELECT 2, aoi_geojson, imagery, imagery_source_id, zoom, model_version,"
        " model_threshold, 'finished', started_at, '2999-01-01T00:00:00+00:00' FROM scans WHERE id = 1"
    )
    conn.execute("UPDATE detections SET scan_id = 2 WHERE id = ?", (story_data.bare_id,))
    conn.close()
    # Scan 2 is the latest finished one, but ids listed in the article are found in scan 1.
    article = write_article(tmp_path, [story_data.thumbnail_only_id])
    result = build_story(article, db, tmp_path / "site", cache_path=story_data.cache)
    assert result.scan_id == 1 and result.n_map_sites == 11
    # Ranked choices use the latest finished scan.
    ranked = write_article(tmp_path, "largest 3", name="ranked.md")
    with pytest.warns(AmberwatchWarning, match="placeholder"):
        result = build_story(ranked, db, tmp_path / "site2", cache_path=story_data.cache)
    assert result.scan_id == 2 and result.fragment_ids == (story_data.bare_id,)


def test_reviews_are_respected(story_data: StoryFixture, tmp_path: Path) -> None:
    """A site reviewed as not mining is neither a fragment nor on the map; named, it is refused; the rest are
    counted as unconfirmed until a reviewer confirms them."""
    from amberwatch.imagery.cache import TileCache
    from amberwatch.web.feedback import decide_feedback, record_feedback
    from amberwatch.web.schema import ensure_schema as ensure_web_schema

    db = tmp_path / "reviewed.db"
    shutil.copy(story_data.db, db)
    rejected, confirmed = story_data.cached_ids[0], story_data.cached_ids[1]
    conn = connect(db)
    ensure_web_schema(conn)
    with TileCache(story_data.cache) as cache:
        for det, verdict in ((rejected, "not_mining"), (confirmed, "confirmed")):
            flag = record_feedback(conn, det, verdict, "quarry" if verdict == "not_mining" else None, None, client="c")
            decide_feedback(conn, cache, flag["id"], "accept", "olena")
    conn.close()
    article = write_article(tmp_path, "largest 12")
    with pytest.warns(AmberwatchWarning, match=r"sites in the story are not confirmed by a reviewer") as caught:
        build_story(article, db, tmp_path / "site", cache_path=story_data.cache)
    data = _data(tmp_path / "site")
    ids = {f["id"] for f in data["fragments"]} | {s["id"] for s in data["sites"]["features"]}
    assert rejected not in ids and confirmed in ids
    total = len({f["id"] for f in data["fragments"]} | {s["id"] for s in data["sites"]["features"]})
    assert any(f"{total - 1} of the {total} sites" in str(w.message) for w in caught)
    with pytest.raises(Exception, match=rf"fragment id\(s\) {rejected} were reviewed as not mining"):
        build_story(
            write_article(tmp_path, [rejected, confirmed], "named.md"),
            db,
            tmp_path / "named",
            cache_path=story_data.cache,
        )
