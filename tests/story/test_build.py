"""Building the story folder through the CLI: files, self-containment, fallbacks and clear errors."""

from __future__ import annotations

import io
import json
import math
import re
import shutil
from pathlib import Path

import mercantile
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from amberwatch.cli import main
from amberwatch.db import connect
from amberwatch.errors import AmberwatchWarning, NotFoundError
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.decode import decode_image
from amberwatch.results.store import ensure_schema
from amberwatch.story.builder import build_story, find_external_urls
from tests.story.conftest import PATCHES, REPO, SOURCE_ID, ZOOM, StoryFixture, _insert, _polygon, write_article


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
        assert (out / "tiles" / f"{key}.webp").is_file()  # WebP: no-data is transparent, not black
    assert (out / "assets" / "leaflet" / "leaflet.js").is_file()
    assert len(data["sites"]["features"]) == 12
    # Every site on the map is a fragment: the legend names no "other detections".
    assert "12 fragments in this story" in page and "other detection" not in page


def test_captions_in_plain_words(built_story: Path, story_data: StoryFixture) -> None:
    """Captions name the nearest village unless the article names the place; readers see plain words, never the
    model's id, the imagery's spec or a path."""
    data = _data(built_story)
    captions = {f["id"]: f["caption"] for f in data["fragments"]}
    first = story_data.cached_ids[0]
    assert captions[first].startswith("Klesiv forest · ")  # 'places:' in the front matter wins
    for fid, caption in captions.items():
        assert "likely mining · model confidence " in caption and caption.endswith("%")
        if fid != first:
            assert re.match(r"(\d+(\.\d)? km (N|NE|E|SE|S|SW|W|NW) of |near |in )Klesiv · ", caption), caption
            assert "°N" not in caption  # coordinates only when no village is within 50 km
    page = (built_story / "index.html").read_text("utf-8")
    assert 'class="cap-status">likely mining · model confidence' in page
    assert "km S of Klesiv" in page or "km SE of Klesiv" in page
    for text in (page, (built_story / "data.js").read_text("utf-8")):
        for internal in ("test-1", SOURCE_ID, "mbtiles", str(story_data.db.parent), "scan 1)", "model 0"):
            assert internal not in text, internal
    assert "Imagery: provider not stated." in page  # the scan names no provider: no preset, no stored credit
    assert data["attribution"] == "Imagery: provider not stated · Sites: amberwatch"
    assert "fixture scan" not in page  # the scan's name is no credit


def _equal_sites_db(story_data: StoryFixture, folder: Path) -> Path:
    """A copy of the fixture whose scan holds 12 sites of one shape and size, spread over the cached patches."""
    db = folder / "equal.db"
    shutil.copyfile(story_data.db, db)
    shutil.copyfile(story_data.cache, folder / "equal-tiles.mbtiles")
    conn = connect(db)
    conn.execute("DELETE FROM detections")
    for i in range(12):
        t0 = mercantile.tile(PATCHES[i % 2][1], PATCHES[i % 2][2], ZOOM)
        b = mercantile.bounds(t0.x + 1 + (i // 2) % 2, t0.y + 1 + (i // 4) % 2, ZOOM)
        lon, lat = (b.west + b.east) / 2, (b.south + b.north) / 2
        _insert(conn, _polygon(lon, lat, 80, seed=3), lat, lon, 0.6 + 0.01 * i, thumb=None)
    conn.close()
    return db


@pytest.mark.slow
def test_equal_sites_are_not_a_plain_grid(story_data: StoryFixture, tmp_path: Path) -> None:
    """12 sites of one size used to be packed as a plain 3-column grid of 2x2 cells."""
    db = _equal_sites_db(story_data, tmp_path)
    result = build_story(write_article(tmp_path, "largest 12"), db, tmp_path / "site")
    assert len(result.fragment_ids) == 12
    page = (tmp_path / "site" / "index.html").read_text("utf-8")
    layout = (tmp_path / "site" / "assets" / "layout.css").read_text("utf-8")
    blocks = re.findall(r'<div class="frag-grid"[^>]*>(.*?)</div></section>', page)
    assert len(blocks) >= 2
    shapes: set[tuple[str, str]] = set()
    for block in blocks:
        rules = [re.search(rf"#frag-{i}\{{([^}}]*)\}}", layout).group(1) for i in re.findall(r'id="frag-(\d+)"', block)]
        spans = re.findall(r"--dw:(\d+);--dh:(\d+);", ";".join(rules))
        assert len(set(spans)) >= 2, spans  # identical rectangles in a block make a plain grid
        shapes |= set(spans)
    assert len(shapes) >= 2


STRICT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-src 'none'; form-action 'none'; img-src 'self' data:"
)
CSP_META_RE = re.compile(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">')


def _csp(folder: Path) -> str:
    """The CSP of a built page (the meta must come before anything the page loads)."""
    text = (folder / "index.html").read_text("utf-8")
    m = CSP_META_RE.search(text)
    assert m is not None and m.start() < text.index("<link") < text.index("<script")
    return m.group(1)


def test_page_has_a_strict_csp_and_no_inline_script(built_story: Path) -> None:
    assert _csp(built_story) == STRICT_CSP
    text = (built_story / "index.html").read_text("utf-8")
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", text) == []  # every script is a file of the folder
    assert re.findall(r"\son[a-z]+\s*=", text) == []  # no event-handler attributes
    assert re.findall(r"\sstyle\s*=", text) == []  # the grid placements are in assets/layout.css


def test_basemap_is_off_by_default_and_named_presets_only(
    built_story: Path, story_data: StoryFixture, tmp_path: Path
) -> None:
    assert _data(built_story)["basemap"] is None
    assert find_external_urls(built_story) == []
    article = write_article(tmp_path, [story_data.cached_ids[0]], name="online.md")
    text = article.read_text("utf-8").replace("byline:", "basemap: OpenStreetMap.Mapnik\nbyline:")
    article.write_text(text, "utf-8")
    assert build_story(article, story_data.db, tmp_path / "online").basemap == "OpenStreetMap.Mapnik"
    basemap = _data(tmp_path / "online")["basemap"]
    assert basemap["url"] == "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    assert basemap["attribution"] == "© OpenStreetMap contributors" and basemap["maxNativeZoom"] == 19
    # The basemap is the only address outside the folder: its URL in data.js, its origin in the page's CSP.
    hits = find_external_urls(tmp_path / "online")
    assert hits and all(f in ("data.js", "index.html") and "tile.openstreetmap.org" in x for f, x in hits)
    allowed = (basemap["url"], "https://tile.openstreetmap.org")
    assert find_external_urls(tmp_path / "online", allowed=allowed) == []
    assert _csp(tmp_path / "online") == STRICT_CSP.replace("data:", "data: https://tile.openstreetmap.org")
    article.write_text(text.replace("OpenStreetMap.Mapnik", "Nope.Nothing"), "utf-8")
    code, out = _cli(str(article), "--db", str(story_data.db), "--out", str(tmp_path / "bad"))
    assert code == 1 and "'Nope.Nothing'" in out and "online.md" in out and "xyzservices" in out
    article.write_text(text.replace("OpenStreetMap.Mapnik", "Thunderforest.OpenCycleMap"), "utf-8")
    code, out = _cli(str(article), "--db", str(story_data.db), "--out", str(tmp_path / "bad"))
    assert code == 1 and "'Thunderforest.OpenCycleMap' needs an API key" in out


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
    assert 'alt="Satellite image of a likely amber-mining site' in page
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
    assert "Texty\u2019s story" in page and "texty.org.ua/d/amber" in page  # smarty's &rsquo; as a character
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
    # The legend counts the map's other sites apart from the fragments (12 sites in the scan, 3 of them fragments).
    assert "3 fragments in this story" in page and "9 other sites the model found" in page


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


def _dark_share(pixels: np.ndarray) -> float:
    """Share of near-black pixels (no-data shows as black)."""
    return float((pixels[:, :, :3].max(axis=2) <= 12).mean())


def _fragment_pixels(folder: Path, fragment: dict) -> np.ndarray:
    return np.asarray(Image.open(folder / fragment["overlay"]).convert("RGB"))


def test_fragment_at_the_edge_of_the_imagery_keeps_out_of_it(story_data: StoryFixture, tmp_path: Path) -> None:
    """No tiles west of the patch: the square stays centred on the site and shrinks to the imagery instead of
    showing black (it used to move east, leaving the site off-centre; see also test_fragments_evidence.py)."""
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
    (site_s, site_w), (site_n, site_e) = frag["siteBounds"]
    assert w >= west - 1e-5  # no black margin beyond the imagery (within a pixel)
    assert (w + e) / 2 == pytest.approx((site_w + site_e) / 2, abs=1e-5)  # centred on the site
    assert w <= site_w and e >= site_e and south <= site_s and north >= site_n  # the site is in the fragment
    assert (e - w) * math.cos(math.radians(lat)) == pytest.approx(north - south, rel=0.02)  # still square
    assert _dark_share(_fragment_pixels(tmp_path / "site", frag)) < 0.005


def _cut_west_of_patch(cache_path: Path, keep_from: float) -> float:
    """Make the west part of the first patch's west tile column transparent (no-data); the new imagery edge."""
    t0 = mercantile.tile(PATCHES[0][1], PATCHES[0][2], ZOOM)
    col = int(256 * keep_from)
    with TileCache(cache_path) as cache:
        for dy in range(4):
            rgb = decode_image(bytes(cache.get(SOURCE_ID, ZOOM, t0.x, t0.y + dy).data))
            alpha = np.zeros((256, 256), dtype=np.uint8)
            alpha[:, col:] = 255
            rgb[:, :col] = 0
            buf = io.BytesIO()
            Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(buf, format="PNG")
            cache.put(SOURCE_ID, ZOOM, t0.x, t0.y + dy, buf.getvalue(), content_type="image/png")
    b = mercantile.bounds(t0.x, t0.y, ZOOM)
    return b.west + (b.east - b.west) * col / 256


def test_no_data_inside_tiles_gives_no_black_bands(story_data: StoryFixture, tmp_path: Path) -> None:
    """Imagery missing on one side inside the tiles (transparent, read as black): neither the fragments nor the
    map tiles show black; the map tiles are transparent there."""
    db = tmp_path / "nodata.db"
    shutil.copyfile(story_data.db, db)
    shutil.copyfile(story_data.cache, tmp_path / "nodata-tiles.mbtiles")
    edge = _cut_west_of_patch(tmp_path / "nodata-tiles.mbtiles", keep_from=0.6)
    t0 = mercantile.tile(PATCHES[0][1], PATCHES[0][2], ZOOM)
    ids = []
    conn = connect(db)
    for k, (metres, row) in enumerate(((40, 1), (70, 2), (25, 3))):  # a few sites close to the no-data edge
        lat = mercantile.bounds(t0.x, t0.y + row, ZOOM).north
        lon = edge + metres / (111_320 * math.cos(math.radians(lat)))
        ids.append(_insert(conn, _polygon(lon, lat, 50, seed=20 + k), lat, lon, 0.8, thumb=None))
    conn.close()
    site = tmp_path / "site"
    result = build_story(write_article(tmp_path, ids), db, site)
    assert result.fragment_origins == {"cache": 3}
    for frag in _data(site)["fragments"]:
        (_, w), _ = frag["bounds"]
        assert w >= edge - 2e-5, frag  # within a pixel or two of the imagery's edge
        assert _dark_share(_fragment_pixels(site, frag)) < 0.005, frag["id"]
    # Map tiles: WebP with alpha, transparent where there is no imagery, never opaque black.
    tile = np.asarray(Image.open(site / "tiles" / f"{ZOOM}/{t0.x}/{t0.y + 1}.webp").convert("RGBA"))
    assert (tile[:, :140, 3] == 0).all() and (tile[:, 160:, 3] == 255).all()
    for path in (site / "tiles").rglob("*.webp"):
        px = np.asarray(Image.open(path).convert("RGBA"))
        opaque_black = (px[:, :, 3] > 128) & (px[:, :, :3].max(axis=2) <= 12)
        assert opaque_black.mean() < 0.002, path


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
    from amberwatch.review.feedback import decide_feedback, record_feedback
    from amberwatch.review.schema import ensure_schema as ensure_web_schema

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
    captions = {s["id"]: s["properties"]["caption"] for s in data["sites"]["features"]}
    assert captions[confirmed].endswith("mining confirmed by a reviewer")
    assert all("likely mining · model confidence" in c for i, c in captions.items() if i != confirmed)
    total = len({f["id"] for f in data["fragments"]} | {s["id"] for s in data["sites"]["features"]})
    assert any(f"{total - 1} of the {total} sites" in str(w.message) for w in caught)
    with pytest.raises(Exception, match=rf"fragment id\(s\) {rejected} were reviewed as not mining"):
        build_story(
            write_article(tmp_path, [rejected, confirmed], "named.md"),
            db,
            tmp_path / "named",
            cache_path=story_data.cache,
        )
