"""A full project DB under the web app: the write answers 507 JSON without the server's paths, and nothing half done."""

from __future__ import annotations

from fastapi.testclient import TestClient

from amberwatch.web.app import create_app
from tests.fixtures.diskfull import cap_sqlite_file


def test_a_write_on_a_full_project_db_answers_507_and_keeps_the_flag_pending(project, monkeypatch):
    did = project.detection_ids[0]
    h = {"Authorization": f"Bearer {project.reviewer_token}"}
    cap_sqlite_file(monkeypatch, project.db_path, spare_pages=0)  # no page more: the example's chip cannot be stored
    with TestClient(create_app(project.db_path, project.cache_path)) as client:
        flagged = client.post(f"/api/detections/{did}/feedback", json={"verdict": "not_mining", "category": "quarry"})
        assert flagged.status_code == 201, flagged.text
        r = client.post(f"/api/feedback/sites/{did}/accept", json={"verdict": "not_mining"}, headers=h)
        assert r.status_code == 507, r.text
        body = r.json()
        assert body["status"] == 507 and "the project database could not be written" in body["error"]
        assert "work done so far is kept" in body["error"] and str(project.db_path) not in body["error"]
        queue = client.get("/api/feedback/sites", headers=h)
        assert queue.status_code == 200 and [s["detection_id"] for s in queue.json()["sites"]] == [did]
