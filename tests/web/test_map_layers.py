"""Issue 14 (3, 4, 5) in the API: totals respect reviews; every scan names its imagery and its scanned bounds."""

from __future__ import annotations

import json

import pytest

from amberwatch.db import connect
from amberwatch.results.store import query_detections
from tests.web.conftest import SOURCE_ID, add_scan, reject_as_not_mining


@pytest.fixture
def app_client(project):
    """A TestClient made after the test changed the project (the ``client`` fixture is made before)."""
    from fastapi.testclient import TestClient

    from amberwatch.web.app import create_app

    def make():
        return TestClient(create_app(project.db_path, project.cache_path))

    return make


def hectares(project, ids) -> float:
    return sum(r.area_ha for r in query_detections(connect(project.db_path), ids=list(ids)))


def test_scan_totals_leave_out_sites_reviewed_as_not_mining(project, app_client):
    rejected, confirmed = project.detection_ids[1], project.detection_ids[2]
    reject_as_not_mining(project, rejected)
    reject_as_not_mining(project, confirmed, verdict="confirmed")
    with app_client() as c:
        c.post(f"/api/detections/{project.detection_ids[3]}/feedback", json={"verdict": "not_mining"})  # pending
        (layer,) = c.get("/api/scans").json()["scans"]
    kept = [d for d in project.detection_ids if d != rejected]
    assert layer["detections"] == 4 and layer["hectares"] == pytest.approx(hectares(project, kept))
    assert layer["removed_after_review"] == 1
    assert layer["removed_hectares"] == pytest.approx(hectares(project, [rejected]))


def test_scan_totals_without_reviews(client, project):
    (layer,) = client.get("/api/scans").json()["scans"]
    assert layer["detections"] == 5 and layer["removed_after_review"] == 0 and layer["removed_hectares"] == 0
    assert layer["hectares"] == pytest.approx(hectares(project, project.detection_ids))


def test_every_scan_has_its_imagery_source_credit_and_scanned_bounds(project, app_client):
    other, _ = add_scan(project, "second-imagery", "Survey B © 2019", shift=4)
    with app_client() as c:
        scans = {s["id"]: s for s in c.get("/api/scans").json()["scans"]}
        for s in scans.values():
            w, south, e, n = s["scanned_bounds"]
            aoi = json.loads(
                connect(project.db_path).execute("SELECT aoi_geojson FROM scans WHERE id = ?", (s["id"],)).fetchone()[0]
            )
            ring = aoi["coordinates"][0]
            assert (w, south, e, n) == pytest.approx((ring[0][0], ring[0][1], ring[1][0], ring[2][1]), abs=1e-9)
    assert scans[project.scan_id]["imagery_source_id"] == SOURCE_ID
    assert scans[other]["imagery_source_id"] == "second-imagery"
    assert scans[other]["imagery_credit"] == "Survey B © 2019"
    assert scans[other]["scanned_bounds"][0] > scans[project.scan_id]["scanned_bounds"][2]
