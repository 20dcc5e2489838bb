"""A project made by the previous release (tests/fixtures/old_project) opens, resumes its scan and serves its map."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from amberwatch.cli import main
from tests.fixtures.old_project.make import FAILED, OLD_PORT, ZOOM, bbox_text, serve
from tests.fixtures.tileserver import TileServer

OLD = Path(__file__).resolve().parents[1] / "fixtures" / "old_project"


@pytest.fixture
def old_server():
    """The synthetic imagery at the URL the old project recorded (127.0.0.1:OLD_PORT)."""
    try:
        server = TileServer(port=OLD_PORT)
    except OSError as exc:
        raise RuntimeError(f"port {OLD_PORT} of the old project's tile server is taken ({exc})") from exc
    serve(server)
    server.start()
    yield server
    server.stop()


@pytest.mark.slow
def test_old_project_opens_resumes_its_scan_and_serves_its_map(old_server, tmp_path):
    from fastapi.testclient import TestClient

    from amberwatch.web.app import create_app

    for name in ("old.db", "old-tiles.mbtiles"):
        shutil.copy(OLD / name, tmp_path / name)
    db, cache = tmp_path / "old.db", tmp_path / "old-tiles.mbtiles"
    with sqlite3.connect(cache) as conn:
        cached_before = conn.execute("SELECT COUNT(*) FROM tiles").fetchone()[0]
    args = ["scan", "--bbox", bbox_text(), "--imagery", old_server.url, "--zoom", str(ZOOM), "--db", str(db)]
    result = CliRunner().invoke(main, [*args, "--workers", "1", "--no-progress", "--min-area-ha", "0"])
    assert result.exit_code == 0, result.output
    assert "scan 1: resuming" in result.output and "Scan 1 resumed and finished: 16 tiles (16 done" in result.output
    assert [p for p in old_server.tile_requests() if p.endswith(".png")] == [
        f"/{z}/{x}/{y}.png" for z, x, y in FAILED
    ]  # only the tile that had failed; the rest came from the old cache
    assert not (tmp_path / "old-tiles.sqlite").exists()
    with sqlite3.connect(cache) as conn:
        assert conn.execute("SELECT COUNT(*) FROM tiles").fetchone()[0] == cached_before + len(FAILED)

    with TestClient(create_app(str(db))) as client:
        assert client.get("/").status_code == 200
        scans = client.get("/api/scans").json()["scans"]
        assert [(s["id"], s["status"]) for s in scans] == [(1, "finished")]
        features = client.get("/api/detections", params={"scan": 1}).json()["features"]
        assert features
        one = client.get(f"/api/detections/{features[0]['id']}")
        assert one.status_code == 200 and json.loads(one.text)["geometry"]["type"] in ("Polygon", "MultiPolygon")
        with sqlite3.connect(db) as conn:
            source_id = conn.execute("SELECT imagery_source_id FROM scans WHERE id = 1").fetchone()[0]
        z, x, y = FAILED[0]
        tile = client.get(f"/tiles/{source_id}/{z}/{x}/{y}.png")
        assert tile.status_code == 200 and tile.content.startswith(b"\x89PNG")
