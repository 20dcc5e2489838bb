"""The map server's background warm-up: the gazetteer, and every scan's overview tiles when asked for."""

from __future__ import annotations

from fastapi.testclient import TestClient

from amberwatch.web.app import create_app
from amberwatch.web.warmup import scan_pyramids
from tests.web.conftest import SOURCE_ID, ZOOM, add_scan


def test_each_imagery_pyramid_is_listed_once(project):
    add_scan(project, SOURCE_ID, "same imagery, east", shift=4)  # same source and zoom: one pyramid
    assert scan_pyramids(project.db_path) == [(SOURCE_ID, ZOOM, ZOOM - 5)]


def test_served_map_builds_overviews_in_the_background(project):
    app = create_app(project.db_path, project.cache_path, build_overviews=True)
    with TestClient(app) as client:
        app.state.warmup.thread.join(60)
        assert not app.state.warmup.thread.is_alive()
        cache = app.state.cache
        for z in range(ZOOM - 5, ZOOM):
            built = {(x >> (ZOOM - z), y >> (ZOOM - z)) for _, x, y in project.tiles}
            assert all(cache.get_overview(SOURCE_ID, ZOOM, z, x, y) is not None for x, y in built), z
        assert client.get("/api/scans").status_code == 200


def test_map_without_build_overviews_leaves_them_to_requests(project):
    app = create_app(project.db_path, project.cache_path)
    with TestClient(app):
        app.state.warmup.thread.join(60)
        _, x, y = project.tiles[0]
        assert app.state.cache.get_overview(SOURCE_ID, ZOOM, ZOOM - 1, x >> 1, y >> 1) is None
