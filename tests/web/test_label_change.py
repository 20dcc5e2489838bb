"""Issue 28 item 6, the web half: ``/label?sample=N`` on a change sample labels each unit at both dates.

In-process API tests on a real two-date project (``tests/web/dated.py`` with grids that map its sites; the change
sample runs from its 2019 scan to its 2023 scan): each unit's view per date is cut from that date's cached imagery,
both answers go through ``results.area_review``, and the change estimate from web labels is the one from CSV labels.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from shapely.geometry import Point

from amberwatch.cli import main
from amberwatch.db import connect
from amberwatch.imagery.decode import decode_image
from amberwatch.results.area_review import import_reference_csv, pending_units
from amberwatch.results.sampling import draw_change_sample, sample_units
from amberwatch.web.app import create_app
from tests.web.dated import SAND, SITES, DatedProject, build_dated_project, site_box

EARLIER, LATER = "2019-06-26", "2023-06-26"


@dataclass
class ChangeProject:
    """A dated web project with a change sample from its 2019 scan to its 2023 scan."""

    project: DatedProject
    sample_id: int

    @property
    def headers(self) -> dict:
        """The reviewer's authorization header."""
        return {"Authorization": f"Bearer {self.project.reviewer_token}"}


def build_change_project(tmp_path: Path, n: int = 12, seed: int = 3) -> ChangeProject:
    """The dated project (grids mapping its sites) with a change sample of ``n`` units, 2019 -> 2023."""
    project = build_dated_project(tmp_path, site_grids=True)
    conn = connect(project.db_path)
    sample = draw_change_sample(
        conn, project.scan_ids[EARLIER], project.scan_ids[LATER], n, allocation="equal", seed=seed
    )
    conn.close()
    return ChangeProject(project, sample.sample_id)


def truth(unit: dict, date: str) -> str:
    """What a labeller sees at a unit's centre at a date: mining inside a site found then."""
    here = Point(unit["lon"], unit["lat"])
    return "mining" if any((b := site_box(s, date)) is not None and b.contains(here) for s in SITES) else "not_mining"


@pytest.fixture
def change(tmp_path: Path) -> ChangeProject:
    return build_change_project(tmp_path)


@pytest.fixture
def change_client(change: ChangeProject) -> Iterator[TestClient]:
    with TestClient(create_app(change.project.db_path, change.project.cache_path)) as c:
        yield c


def _sand_share(image: np.ndarray) -> float:
    return float((np.abs(image.astype(int) - SAND).sum(axis=2) < 30).mean())


def test_a_change_unit_is_shown_at_both_dates_from_each_dates_imagery(change, change_client):
    h = change.headers
    q = change_client.get(f"/api/label/queue?sample={change.sample_id}", headers=h).json()
    assert q["dates"] == [EARLIER, LATER] and q["labelled"] == 0 and len(q["items"]) == 12
    assert all(i["prob"] is None and i["capture_date"] is None for i in q["items"])  # blind: no map class
    assert "stratum" not in json.dumps(q) and "map_class" not in json.dumps(q)
    new = next(u for u in pending_units(connect(change.project.db_path), change.sample_id, include_map_class=True)
               if u["stratum"] == "new" and truth(u, EARLIER) == "not_mining")  # fmt: skip
    item = next(i for i in q["items"] if i["key"] == f"u{change.sample_id}/{new['unit_id']}")
    assert [(d["at"], d["date"]) for d in item["dates"]] == [("earlier", EARLIER), ("later", LATER)]
    earlier, later = (decode_image(change_client.get(d["chip_url"], headers=h).content) for d in item["dates"])
    assert earlier.shape == later.shape and earlier.shape[0] >= 256
    assert _sand_share(later) > _sand_share(earlier) + 0.01  # the pit dug by 2023 shows in the later view only


def test_both_dates_are_recorded_through_area_review(change, change_client):
    h, sid = change.headers, change.sample_id
    key = change_client.get(f"/api/label/queue?sample={sid}", headers=h).json()["items"][0]["key"]
    r = change_client.post("/api/label", json={"key": key, "label": "mining", "label_from": "not_mining"}, headers=h)
    assert r.status_code == 201 and r.json()["example_id"] is None
    unit = next(u for u in sample_units(connect(change.project.db_path), sid) if f"u{sid}/{u['unit_id']}" == key)
    assert (unit["reference_class_from"], unit["reference_class"], unit["reviewed_by"]) == (
        "not_mining", "mining", "olena"
    )  # fmt: skip
    q = change_client.get(f"/api/label/queue?sample={sid}", headers=h).json()
    assert q["labelled"] == 1 and key not in [i["key"] for i in q["items"]]


def test_bad_change_labels_are_refused_naming_what_is_wrong(change, change_client):
    h, sid = change.headers, change.sample_id
    key = change_client.get(f"/api/label/queue?sample={sid}", headers=h).json()["items"][0]["key"]
    missing = change_client.post("/api/label", json={"key": key, "label": "mining"}, headers=h)
    assert missing.status_code == 422
    assert "label_from" in missing.json()["error"] and EARLIER in missing.json()["error"]
    bad = change_client.post("/api/label", json={"key": key, "label": "mining", "label_from": "skip"}, headers=h)
    assert bad.status_code == 422 and "'skip'" in bad.json()["error"]
    body = '{"key": "KEY", "label": "mining", "label_from": "\\ud800"}'.replace("KEY", key)  # a lone surrogate
    odd = change_client.post("/api/label", content=body, headers={**h, "content-type": "application/json"})
    assert odd.status_code == 422
    assert len(pending_units(connect(change.project.db_path), sid)) == 12  # nothing recorded
    view = change_client.get(f"/api/label/chip.jpg?key={key}&at=yesterday", headers=h)
    assert view.status_code == 422 and "'yesterday'" in view.json()["error"]
    one = change_client.get("/api/label/queue", headers=h).json()["items"][0]["key"]  # the newest scan: one date
    assert change_client.get(f"/api/label/chip.jpg?key={one}&at=earlier", headers=h).status_code == 422
    r = change_client.post("/api/label", json={"key": one, "label": "mining", "label_from": "mining"}, headers=h)
    assert r.status_code == 422 and "label_from" in r.json()["error"]


def test_no_imagery_at_the_earlier_date_replaces_the_unit(change, change_client):
    h, sid = change.headers, change.sample_id
    key = change_client.get(f"/api/label/queue?sample={sid}", headers=h).json()["items"][0]["key"]
    body = {"key": key, "label": "no_imagery", "label_from": "no_imagery"}
    r = change_client.post("/api/label", json=body, headers=h)
    assert r.status_code == 201 and r.json()["replacement_key"].startswith(f"u{sid}/")
    keys = [i["key"] for i in change_client.get(f"/api/label/queue?sample={sid}", headers=h).json()["items"]]
    assert r.json()["replacement_key"] in keys and key not in keys and len(keys) == 12


def _estimate(db_path: Path, sample_id: int) -> dict:
    r = CliRunner().invoke(main, ["area", "estimate", "--sample", str(sample_id), "--json", "--db", str(db_path)])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


@pytest.mark.slow
def test_area_estimate_reports_the_same_change_from_web_labels_as_from_csv_labels(tmp_path):
    (tmp_path / "web").mkdir(), (tmp_path / "csv").mkdir()
    web, sheet = build_change_project(tmp_path / "web"), build_change_project(tmp_path / "csv")
    units = sample_units(connect(web.project.db_path), web.sample_id)
    assert [u["unit_id"] for u in units] == [u["unit_id"] for u in sample_units(connect(sheet.project.db_path), 1)]
    with TestClient(create_app(web.project.db_path, web.project.cache_path)) as client:
        for u in units:
            key = f"u{web.sample_id}/{u['unit_id']}"
            body = {"key": key, "label": truth(u, LATER), "label_from": truth(u, EARLIER)}
            assert client.post("/api/label", json=body, headers=web.headers).status_code == 201
    path = tmp_path / "sheet.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["unit_id", "reference_from", "reference_to"])
        w.writerows([u["unit_id"], truth(u, EARLIER), truth(u, LATER)] for u in units)
    import_reference_csv(connect(sheet.project.db_path), sheet.sample_id, path, reviewed_by="olena")
    from_web, from_csv = _estimate(web.project.db_path, web.sample_id), _estimate(sheet.project.db_path, 1)
    assert from_web["change"] and from_web["from_date"] == EARLIER and from_web["reviewed"] == 12
    assert from_web == from_csv
    assert "new" in from_web["sentence"] or "dug" in from_web["sentence"]
