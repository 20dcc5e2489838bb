"""``amberwatch publish``: the archive read back with ``pmtiles.reader``, the public sites, place labels, config and
the one-line errors, on real projects (SQLite DB, tile cache of real imagery)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

from click.testing import CliRunner
from fastapi.testclient import TestClient
from pmtiles.reader import MmapSource, Reader, all_tiles
from pmtiles.tile import TileType

from amberwatch.cli import main
from amberwatch.db import connect
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.overview import overview_min_zoom
from amberwatch.imagery.types import LngLatBbox
from amberwatch.project import tile_cache_path
from amberwatch.publish.edition import Edition, PublishOptions, publish
from amberwatch.results.locator import locator_document
from amberwatch.results.store import ensure_schema, replace_detections
from amberwatch.web.app import create_app
from tests.story.conftest import NOW, SOURCE_ID, THEN, ZOOM, DatedFixture, StoryFixture

REPO = Path(__file__).resolve().parents[2]
AOI = LngLatBbox(26.85, 51.25, 26.95, 51.35)  # the fixture scans' AOI


def _read(path: Path) -> tuple[dict, dict, dict[tuple[int, int, int], bytes]]:
    """(header, metadata, {(z, x, y): bytes}) of a PMTiles archive."""
    with open(path, "rb") as f:
        get = MmapSource(f)
        reader = Reader(get)
        return reader.header(), reader.metadata(), dict(all_tiles(get))


def _sites(edition: Edition, name: str = "sites.geojson") -> dict:
    return json.loads((edition.out_dir / name).read_text("utf-8"))


def test_archive_holds_the_cached_tiles_and_overviews(edition: Edition, project: StoryFixture) -> None:
    """Base tiles are the cached bytes; overviews (the cache's own) reach the zoom where the AOI fits 2 x 2 tiles;
    the header and metadata give bounds, zooms and the imagery credit."""
    header, meta, tiles = _read(edition.out_dir / "imagery.pmtiles")
    min_z = overview_min_zoom(ZOOM, AOI)
    assert (header["min_zoom"], header["max_zoom"]) == (min_z, ZOOM) and min_z < ZOOM - 5
    assert header["min_lon_e7"] == 268_500_000 and header["max_lat_e7"] == 513_500_000
    assert header["clustered"] and header["tile_type"] == TileType.UNKNOWN  # PNG base tiles, JPEG or PNG overviews
    assert meta["attribution"] == "imagery provider not stated" and (meta["minzoom"], meta["maxzoom"]) == (min_z, ZOOM)
    base = {k: v for k, v in tiles.items() if k[0] == ZOOM}
    assert len(base) == 32
    with TileCache(project.cache) as cache:
        assert all(cache.get(SOURCE_ID, *k).image == v for k, v in base.items())
        for z in range(min_z, ZOOM):
            level = {k: v for k, v in tiles.items() if k[0] == z}
            assert level, f"no overview at zoom {z}"
            assert all(cache.get_overview(SOURCE_ID, ZOOM, *k).data == v for k, v in level.items())
    assert len([k for k in tiles if k[0] == min_z]) <= 4


def test_sites_are_the_maps_public_features(edition: Edition, project: StoryFixture) -> None:
    """sites.geojson: the map's feature properties (area_ha to 4 places, place names), the scan's credit."""
    data = _sites(edition)
    assert data["imagery_credit"] == "imagery provider not stated" and data["scan_id"] == project.scan_id
    props = {f["id"]: f["properties"] for f in data["features"]}
    assert set(props) == {*project.cached_ids, project.thumbnail_only_id, project.bare_id}
    for p in props.values():
        assert p["area_ha"] == round(p["area_ha"], 4) and p["review"] is None and p["has_thumbnail"] is False
        assert re.match(r"^[0-9.]+ km [NSEW]{1,2} of \w", p["place"]), p["place"]


def test_places_and_config(edition: Edition) -> None:
    """Place labels near the sites; config.json names every file, flagging and basemap off by default."""
    places = json.loads((edition.out_dir / "places.geojson").read_text("utf-8"))["features"]
    assert 1 <= len(places) <= 40 and all(p["properties"]["name"] for p in places)
    lon, lat = places[0]["geometry"]["coordinates"]
    assert abs(lon - 26.9) < 0.3 and abs(lat - 51.3) < 0.2
    config = json.loads((edition.out_dir / "config.json").read_text("utf-8"))
    assert config["flag_endpoint"] is None and config["basemap"] is None and config["story"] is None
    assert config["bounds"] == [26.85, 51.25, 26.95, 51.35] and config["dates"] == []
    assert config["timeline"] is None and not (edition.out_dir / "timeline.json").exists()
    (layer,) = config["layers"]
    for name in (layer["imagery"], layer["sites"], config["places"], *config["assets"].values()):
        assert (edition.out_dir / name).is_file(), name
    assert (edition.out_dir / "assets" / "PMTILES-LICENSE.txt").is_file()


def _locator_of_published_sites(edition: Edition) -> str | None:
    """The locator (results.locator) of the extent of every site the edition publishes."""
    import shapely

    features = [f for layer in edition.config["layers"] for f in _sites(edition, layer["sites"])["features"]]
    bounds = [shapely.geometry.shape(f["geometry"]).bounds for f in features]
    return locator_document(LngLatBbox(*b) for b in bounds)


def test_locator_beside_config_frames_the_published_sites(edition: Edition) -> None:
    """locator.svg (named by config.json) is the one locator of the published sites' extent, naming the country."""
    config = json.loads((edition.out_dir / "config.json").read_text("utf-8"))
    assert config["locator"] == "locator.svg"
    svg = (edition.out_dir / "locator.svg").read_text("utf-8")
    assert svg == _locator_of_published_sites(edition)
    assert 'role="img"' in svg and 'aria-label="Locator map: the sites in Ukraine"' in svg and "locator-aoi" in svg


def test_viewer_is_the_live_map_page_in_static_mode(edition: Edition) -> None:
    """index.html is the live map's page marked as an edition (data-edition: config.json) with the edition's title;
    every file it loads is in the folder under a relative path (Leaflet, the cluster plugin, the page's own JS and CSS
    as the web app has them, the PMTiles scripts)."""
    page = (edition.out_dir / "index.html").read_text("utf-8")
    assert 'data-edition="config.json"' in page and "<title>fixture scan</title>" in page
    assert "{{" not in page and 'data-categories="' in page and 'data-basemap=""' in page
    loaded = re.findall(r'<(?:script src|link rel="(?:stylesheet|icon)" href)="([^"]+)"', page)
    assert len(loaded) >= 11 and not [u for u in loaded if u.startswith(("/", "http"))], loaded
    for name in loaded:
        assert (edition.out_dir / name).is_file(), name
    web = REPO / "src" / "amberwatch" / "web" / "static"
    for name in ("map.js", "common.js", "timeline.js", "app.css"):
        assert (edition.out_dir / "static" / name).read_bytes() == (web / name).read_bytes(), name
    assert (edition.out_dir / "vendor" / "leaflet" / "images" / "layers.png").is_file()


def test_rejected_sites_stay_out_and_reviews_show(project: StoryFixture, tmp_path: Path) -> None:
    """A site reviewed as not mining is not published; a confirmed one says so."""
    from amberwatch.review.feedback import decide_feedback, record_feedback
    from amberwatch.review.schema import ensure_schema as ensure_web_schema

    db = tmp_path / "reviewed.db"
    shutil.copy(project.db, db)
    shutil.copy(project.cache, tile_cache_path(db))
    rejected, confirmed = project.cached_ids[:2]
    conn = connect(db)
    ensure_web_schema(conn)
    with TileCache(tile_cache_path(db)) as cache:
        for det, verdict in ((rejected, "not_mining"), (confirmed, "confirmed")):
            flag = record_feedback(conn, det, verdict, "quarry" if verdict == "not_mining" else None, None, client="c")
            decide_feedback(conn, cache, flag["id"], "accept", "olena")
    conn.close()
    edition = publish(db, tmp_path / "site")
    props = {f["id"]: f["properties"] for f in _sites(edition)["features"]}
    assert rejected not in props and props[confirmed]["review"] == "confirmed"
    assert edition.config["layers"][0]["n_sites"] == len(project.cached_ids) + 1
    assert (edition.out_dir / "locator.svg").read_text("utf-8") == _locator_of_published_sites(edition)


def test_no_sites_no_locator(project: StoryFixture, tmp_path: Path) -> None:
    """A scan that found nothing: no locator.svg, config.json's locator null (the viewer shows none)."""
    db = tmp_path / "empty.db"
    shutil.copy(project.db, db)
    shutil.copy(project.cache, tile_cache_path(db))
    conn = connect(db)
    replace_detections(conn, project.scan_id, [])
    conn.close()
    edition = publish(db, tmp_path / "site")
    assert edition.config["layers"][0]["n_sites"] == 0
    assert edition.config["locator"] is None and not (edition.out_dir / "locator.svg").exists()


def test_dated_scans_publish_one_layer_per_date(dated_project: DatedFixture, tmp_path: Path) -> None:
    """Each date gets its imagery archive and sites, with the timeline's site ids and statuses."""
    edition = publish(dated_project.db, tmp_path / "site")
    config = edition.config
    assert config["dates"] == [THEN, NOW] and config["date"] == NOW
    files = {x["date"]: (x["imagery"], x["sites"]) for x in config["layers"]}
    assert files == {
        NOW: ("imagery.pmtiles", "sites.geojson"),
        THEN: (f"imagery-{THEN}.pmtiles", f"sites-{THEN}.geojson"),
    }
    now = {f["id"]: f["properties"] for f in _sites(edition)["features"]}
    status = {name: now[i]["status"] for name, i in dated_project.now_ids.items()}
    assert status["A1"] == status["A2"] == "new" and status["B1"] == "growing"
    then = _sites(edition, f"sites-{THEN}.geojson")
    assert then["imagery_date"] == THEN and {f["properties"]["site_id"] for f in then["features"]} <= {
        p["site_id"] for p in now.values()
    }
    _, meta, _ = _read(edition.out_dir / f"imagery-{THEN}.pmtiles")
    assert meta["imagery_date"] == THEN and meta["attribution"] == "Fixture imagery"


def test_a_dated_edition_holds_the_live_maps_timeline(dated_project: DatedFixture, tmp_path: Path) -> None:
    """timeline.json (named by config.json) is what the live map's /api/timeline gives for the same project, and its
    detection ids per date are the ids of the sites files' features."""
    edition = publish(dated_project.db, tmp_path / "site")
    assert edition.config["timeline"] == "timeline.json"
    published = json.loads((edition.out_dir / "timeline.json").read_text("utf-8"))
    live = TestClient(create_app(dated_project.db)).get("/api/timeline").json()
    assert published == live and published["dates"] == [THEN, NOW]
    assert published["scan_ids"] == {THEN: dated_project.scan_ids[THEN], NOW: dated_project.scan_ids[NOW]}
    for layer in edition.config["layers"]:
        ids = {f["id"] for f in _sites(edition, layer["sites"])["features"]}
        assert {i for site in published["sites"] for i in site["detection_ids"][layer["date"]]} == ids
    status = {s["site_id"]: s["status"] for s in published["sites"]}
    assert sorted(status.values()).count("new") == 2 and "growing" in status.values()


def test_flag_endpoint_basemap_and_story(project: StoryFixture, tmp_path: Path) -> None:
    """--flag-endpoint and --basemap reach config.json; --story copies a built story under story/."""
    story = tmp_path / "story-built"
    (story / "assets").mkdir(parents=True)
    (story / "index.html").write_text("<!doctype html><title>story</title>", "utf-8")
    (story / "assets" / "story.js").write_text("// story", "utf-8")
    options = PublishOptions(
        story_dir=str(story), flag_endpoint="https://flags.example.org/", basemap="OpenStreetMap.Mapnik"
    )
    edition = publish(project.db, tmp_path / "site", options)
    config = edition.config
    assert config["flag_endpoint"] == "https://flags.example.org" and config["story"] == "story/index.html"
    assert config["basemap"]["name"] == "OpenStreetMap.Mapnik" and "{z}" in config["basemap"]["url"]
    assert (edition.out_dir / "story" / "assets" / "story.js").read_text("utf-8") == "// story"


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["publish", *args])
    return result.exit_code, result.output


def test_bad_input_gives_one_line_errors(project: StoryFixture, tmp_path: Path) -> None:
    """Unknown or unfinished scan, empty project, non-empty folder without --force, bad endpoint or story folder."""
    db = str(project.db)
    cases = {
        ("--scan", "99"): "scan 99 does not exist",
        ("--flag-endpoint", "javascript:alert(1)"): "flag endpoint 'javascript:alert(1)' is not an http",
        ("--story", str(tmp_path)): "holds no index.html",
        ("--basemap", "No.Such.Map"): "No.Such.Map",
    }
    for args, message in cases.items():
        code, out = _run("--db", db, "--out", str(tmp_path / "new"), *args)
        assert code == 1 and message in out and out.count("\n") == 1, (args, out)
        assert not (tmp_path / "new").exists()
    empty = tmp_path / "empty.db"
    ensure_schema(connect(empty))
    code, out = _run("--db", str(empty), "--out", str(tmp_path / "new"))
    assert code == 1 and "holds no finished scan" in out and out.count("\n") == 1
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine", "utf-8")
    code, out = _run("--db", db, "--out", str(full))
    assert code == 1 and "is not empty: give --force" in out and out.count("\n") == 1


def test_force_replaces_earlier_output_only(project: StoryFixture, tmp_path: Path) -> None:
    """--force publishes over an earlier edition: its stale date files go, files of others stay."""
    out = tmp_path / "site"
    out.mkdir()
    (out / "imagery-2001-01-01.pmtiles").write_bytes(b"old")
    (out / "notes.txt").write_text("mine", "utf-8")
    code, output = _run("--db", str(project.db), "--out", str(out), "--force", "--title", "Amber pits")
    assert code == 0, output
    assert "imagery.pmtiles (" in output and "sites.geojson (12 sites)" in output
    assert not (out / "imagery-2001-01-01.pmtiles").exists() and (out / "notes.txt").exists()
    assert json.loads((out / "config.json").read_text("utf-8"))["title"] == "Amber pits"


def test_vendored_pmtiles_is_the_pinned_build() -> None:
    """assets/pmtiles.js is the file scripts/vendor_pmtiles.sh pins (version and sha256 in the licence note)."""
    script = (REPO / "scripts" / "vendor_pmtiles.sh").read_text("utf-8")
    pinned = re.search(r"PMTILES_SHA256=([0-9a-f]{64})", script).group(1)
    version = re.search(r"PMTILES_VERSION=([0-9.]+)", script).group(1)
    assets = REPO / "src" / "amberwatch" / "publish" / "assets"
    assert hashlib.sha256((assets / "pmtiles.js").read_bytes()).hexdigest() == pinned
    note = (assets / "PMTILES-LICENSE.txt").read_text("utf-8")
    assert pinned in note and f"pmtiles {version}" in note and "BSD" in note
