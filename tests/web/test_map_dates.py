"""Issue 28 item 4, in process: the map's timeline endpoint, scans' dates, and flags that name the date looked at."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from amberwatch.cli import main
from amberwatch.db import connect, migrate, schema_version
from amberwatch.labels.store import ensure_schema as ensure_labels_schema
from amberwatch.results.store import ensure_schema as ensure_results_schema
from amberwatch.review.schema import MIGRATIONS
from amberwatch.web.app import create_app
from tests.web.dated import DATES, DatedProject, build_dated_project


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def dated(tmp_path: Path) -> DatedProject:
    return build_dated_project(tmp_path)


@pytest.fixture
def dated_client(dated: DatedProject) -> Iterator[TestClient]:
    with TestClient(create_app(dated.db_path, dated.cache_path)) as c:
        yield c


def test_timeline_is_the_cli_timeline_plus_scans_and_detections_per_date(dated, dated_client):
    data = dated_client.get("/api/timeline").json()
    cli = CliRunner().invoke(main, ["timeline", "--db", str(dated.db_path), "--json"])
    assert cli.exit_code == 0, cli.output
    expected = json.loads(cli.stdout)
    sites = [{k: v for k, v in s.items() if k != "detection_ids"} for s in data["sites"]]
    assert {"dates": data["dates"], "sites": sites} == expected
    assert data["dates"] == list(DATES) and data["scan_ids"] == dated.scan_ids
    by_status = {s["status"]: s for s in data["sites"]}
    new = by_status["new"]
    assert new["area_ha"]["2021-06-26"] == 0 and new["area_ha"]["2023-06-26"] > 0
    assert new["detection_ids"] == {DATES[0]: [], DATES[1]: [], DATES[2]: [dated.detections["new"][DATES[2]]]}
    growing = by_status["growing"]
    assert growing["detection_ids"] == {d: [i] for d, i in dated.detections["growing"].items()}
    gap = next(s for s in data["sites"] if s["site_id"] == dated.detections["gap"]["2019-06-26"])
    assert gap["area_ha"]["2021-06-26"] is None and gap["detection_ids"]["2021-06-26"] == []


def test_timeline_of_a_chosen_scan_and_of_an_unknown_one(dated, dated_client):
    of_2019 = dated_client.get(f"/api/timeline?scan={dated.scan_ids['2019-06-26']}").json()
    assert of_2019["dates"] == list(DATES)  # the same AOI: the same timeline
    r = dated_client.get("/api/timeline?scan=999")
    assert r.status_code == 404 and "999" in r.json()["error"]


def test_an_undated_project_has_no_dates_and_says_why(client):
    data = client.get("/api/timeline").json()
    assert data["dates"] == [] and data["sites"] == [] and data["scan_ids"] == {}
    assert "two or more imagery dates" in data["notes"][0]
    assert [s["imagery_date"] for s in client.get("/api/scans").json()["scans"]] == [None]


def test_scans_carry_their_imagery_date(dated, dated_client):
    scans = dated_client.get("/api/scans").json()["scans"]
    assert {s["id"]: s["imagery_date"] for s in scans} == {v: k for k, v in dated.scan_ids.items()}


def test_a_flag_records_the_date_of_the_layer_looked_at_and_review_shows_it(dated, dated_client):
    did = dated.detections["growing"]["2019-06-26"]
    body = {"verdict": "confirmed", "imagery_date": "2019-06-26"}
    r = dated_client.post(f"/api/detections/{did}/feedback", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["imagery_date"] == "2019-06-26"
    later = dated.detections["growing"]["2023-06-26"]
    r = dated_client.post(f"/api/detections/{later}/feedback", json={"verdict": "not_mining", "category": "quarry"})
    assert r.status_code == 201 and r.json()["imagery_date"] == "2023-06-26"  # omitted: the detection's layer's date
    sites = dated_client.get("/api/feedback/sites", headers=auth(dated.reviewer_token)).json()["sites"]
    assert {s["detection_id"]: [f["imagery_date"] for f in s["flags"]] for s in sites} == {
        did: ["2019-06-26"],
        later: ["2023-06-26"],
    }


def test_a_sites_popup_shows_the_review_of_the_same_place_at_another_date(dated, dated_client):
    early, late = dated.detections["stable"]["2019-06-26"], dated.detections["stable"]["2023-06-26"]
    r = dated_client.post(f"/api/detections/{early}/feedback", json={"verdict": "not_mining", "category": "quarry"})
    assert r.status_code == 201, r.text
    r = dated_client.post(f"/api/feedback/sites/{early}/accept", headers=auth(dated.reviewer_token), json={})
    assert r.status_code == 200, r.text
    props = dated_client.get(f"/api/detections/{late}").json()["properties"]
    assert props["review_from"]["detection_id"] == early and props["review_from"]["imagery_date"] == "2019-06-26"
    assert props["review"] == "not_mining"


@pytest.mark.parametrize("bad", ["2023-06-26", "2019", "yesterday"])
def test_a_flag_naming_another_date_than_its_layers_is_refused_naming_both(dated, dated_client, bad):
    did = dated.detections["stable"]["2019-06-26"]
    r = dated_client.post(f"/api/detections/{did}/feedback", json={"verdict": "confirmed", "imagery_date": bad})
    assert r.status_code == 422
    assert bad in r.json()["error"] and "2019-06-26" in r.json()["error"]
    assert dated_client.get("/api/feedback/summary", headers=auth(dated.reviewer_token)).json()["flags"] == 0


def test_an_undated_layers_flag_has_no_date_and_refuses_one(client, project):
    did = project.detection_ids[0]
    r = client.post(f"/api/detections/{did}/feedback", json={"verdict": "confirmed"})
    assert r.status_code == 201 and r.json()["imagery_date"] is None
    r = client.post(f"/api/detections/{did}/feedback", json={"verdict": "confirmed", "imagery_date": "2019-06-26"})
    assert r.status_code == 422 and "undated" in r.json()["error"]


def test_flags_made_before_dates_migrate_with_no_date(tmp_path):
    db = tmp_path / "old.db"
    conn = connect(db)
    ensure_results_schema(conn)
    ensure_labels_schema(conn)
    migrate(conn, "web", MIGRATIONS[:4])
    conn.execute(
        "INSERT INTO web_feedback (detection_id, scan_id, verdict, client_hash, reader_hash, created_at)"
        " VALUES (1, 1, 'confirmed', 'c', 'c', '2026-01-01T00:00:00+00:00')"
    )
    conn.close()
    with TestClient(create_app(db, tmp_path / "old-tiles.sqlite")):
        conn = connect(db)
        assert schema_version(conn, "web") == len(MIGRATIONS) >= 5
        assert [tuple(r) for r in conn.execute("SELECT id, imagery_date FROM web_feedback")] == [(1, None)]
