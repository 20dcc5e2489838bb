"""`amberwatch label suggest` and the /label queue filled by a label strategy, on a real scanned project.

The project (tests/web/conftest.py, ``wide_project``) is a finished scan of 7 x 7 tiles with probability grids,
per-tile max probabilities and embeddings: pit-like tiles under the detections and a few hidden ones elsewhere.
"""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from amberwatch.cli import main
from amberwatch.db import connect
from amberwatch.model.strategies import SUGGEST_STRATEGIES
from tests.web.conftest import THRESHOLD, ZOOM


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def wide_client(wide_project):
    from fastapi.testclient import TestClient

    from amberwatch.web.app import create_app

    with TestClient(create_app(wide_project.db_path, wide_project.cache_path)) as c:
        yield c


def suggest(project, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["label", "suggest", "--db", str(project.db_path), *args])
    return result.exit_code, result.stdout, result.stderr


def suggest_json(project, *args: str) -> dict:
    code, out, err = suggest(project, "--scan", str(project.scan_id), "--json", *args)
    assert code == 0, out + err
    return json.loads(out)


def tile_xy(tile: str) -> tuple[int, int]:
    z, x, y = (int(v) for v in tile.split("/"))
    assert z == ZOOM
    return x, y


def max_probs(project) -> dict[tuple[int, int], float]:
    conn = connect(project.db_path)
    rows = conn.execute("SELECT x, y, max_prob FROM scan_tiles WHERE scan_id = ?", (project.scan_id,)).fetchall()
    conn.close()
    return {(int(x), int(y)): float(p) for x, y, p in rows}


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_each_strategy_suggests_k_distinct_tiles_not_labelled_or_queued(wide_client, wide_project):
    h = auth(wide_project.reviewer_token)
    (_, lx, ly), (_, qx, qy) = wide_project.tiles[0], wide_project.tiles[1]
    labelled = wide_client.post(
        "/api/label", json={"key": f"t{wide_project.scan_id}/{ZOOM}/{lx}/{ly}", "label": "skip"}, headers=h
    )
    assert labelled.status_code == 201, labelled.text
    body = {"scan_id": wide_project.scan_id, "tiles": [f"{ZOOM}/{qx}/{qy}"], "source": "similar"}
    assert wide_client.post("/api/label/queue", json=body, headers=h).status_code == 201
    scan_tiles = {(x, y) for _, x, y in wide_project.tiles}
    for strategy in ("uncertain", "similar", "spread", "random", "mix"):
        out = suggest_json(wide_project, "--count", "7", "--strategy", strategy)
        tiles = [tile_xy(t["tile"]) for t in out["tiles"]]
        assert out["strategy"] == strategy and len(tiles) == 7 and len(set(tiles)) == 7, strategy
        assert set(tiles) <= scan_tiles - {(lx, ly), (qx, qy)}, strategy
        assert all(t["reason"] and 0 <= t["prob"] <= 1 and t["lat"] and t["lon"] for t in out["tiles"])
    assert suggest_json(wide_project, "--count", "3")["strategy"] == "uncertain"  # the learning curve's default


def test_uncertain_picks_the_tiles_nearest_the_threshold(wide_project):
    out = suggest_json(wide_project, "--count", "5", "--strategy", "uncertain")
    probs = max_probs(wide_project)
    gap = {xy: abs(logit(p) - logit(THRESHOLD)) for xy, p in probs.items()}
    picked = [tile_xy(t["tile"]) for t in out["tiles"]]
    assert max(gap[xy] for xy in picked) <= min(gap[xy] for xy in gap if xy not in picked) + 1e-9
    assert [gap[xy] for xy in picked] == sorted(gap[xy] for xy in picked)
    assert [t["prob"] for t in out["tiles"]] == [round(probs[xy], 4) for xy in picked]
    assert out["tiles"][0]["reason"].startswith("P(mining)") and out["note"] is None


def test_similar_says_when_the_scan_has_no_confirmed_site_then_finds_the_look_alikes(wide_client, wide_project):
    out = suggest_json(wide_project, "--count", "3", "--strategy", "similar")
    assert "no confirmed site" in out["note"] and len(out["tiles"]) == 3
    code, text, err = suggest(wide_project, "--scan", str(wide_project.scan_id), "--strategy", "similar")
    assert code == 0 and "no confirmed site" in err and len(text.strip().splitlines()) == 20

    h = auth(wide_project.reviewer_token)
    for did in wide_project.detection_ids:  # every detection reviewed as mining
        assert wide_client.post("/api/label", json={"key": f"d{did}", "label": "mining"}, headers=h).status_code == 201
    hidden = {(x, y) for _, x, y in wide_project.hidden_pits}
    out = suggest_json(wide_project, "--count", str(len(hidden)), "--strategy", "similar")
    assert out["note"] is None and {tile_xy(t["tile"]) for t in out["tiles"]} == hidden
    assert all(t["reason"].endswith("like a confirmed site") for t in out["tiles"])
    pits = {(x, y) for _, x, y in wide_project.pit_tiles} - hidden  # under the confirmed sites: never suggested
    for strategy in SUGGEST_STRATEGIES:
        assert not {tile_xy(t["tile"]) for t in suggest_json(wide_project, "--strategy", strategy)["tiles"]} & pits


def test_bad_arguments_exit_2_and_an_unknown_scan_is_named(wide_project):
    scan = str(wide_project.scan_id)
    for args in (["--count", "0"], ["--count", "-3"], ["--strategy", "sideways"], []):
        code, _, err = suggest(wide_project, *(["--scan", scan] if args else []), *args)
        assert code == 2, args
    code, _, err = suggest(wide_project, "--scan", "999")
    assert code == 1 and "scan 999" in err


def test_fill_puts_each_strategys_tiles_on_the_queue(wide_client, wide_project):
    h = auth(wide_project.reviewer_token)
    scan, seen = wide_project.scan_id, set()
    for strategy in SUGGEST_STRATEGIES:
        r = wide_client.post(
            "/api/label/queue/fill", json={"scan_id": scan, "strategy": strategy, "count": 4}, headers=h
        )
        assert r.status_code == 200, r.text
        assert r.json()["queued"] == 4 and r.json()["pending"] == 4
        q = wide_client.get(f"/api/label/queue?scan={scan}&strategy={strategy}", headers=h).json()
        assert q["mode"] == "strategy" and q["strategy"] == strategy and q["words"]
        keys = [i["key"] for i in q["items"]]
        assert len(keys) == 4 and all(i["kind"] == "tile" and "picked by" in i["reason"] for i in q["items"])
        assert not set(keys) & seen, strategy  # a tile queued by one strategy is not picked again
        seen |= set(keys)
    again = wide_client.post(
        "/api/label/queue/fill", json={"scan_id": scan, "strategy": "spread", "count": 4}, headers=h
    )
    assert again.json()["queued"] == 0  # topped up already
    q = wide_client.get(f"/api/label/queue?scan={scan}&strategy=spread", headers=h).json()
    done = q["items"][0]["key"]
    assert wide_client.post("/api/label", json={"key": done, "label": "not_mining"}, headers=h).status_code == 201
    refill = wide_client.post("/api/label/queue/fill", json={"strategy": "spread", "count": 4}, headers=h).json()
    assert refill["queued"] == 1 and refill["scan_id"] == scan
    q = wide_client.get(f"/api/label/queue?scan={scan}&strategy=spread", headers=h).json()
    assert done not in [i["key"] for i in q["items"]] and len(q["items"]) == 4


def test_fill_refuses_bad_input_and_readers(wide_client, wide_project):
    h = auth(wide_project.reviewer_token)
    bad = wide_client.post("/api/label/queue/fill", json={"strategy": "sideways"}, headers=h)
    assert bad.status_code == 422 and "'sideways'" in bad.json()["error"]
    assert wide_client.post("/api/label/queue/fill", json={"count": 0}, headers=h).status_code == 422
    assert wide_client.get("/api/label/queue?strategy=sideways", headers=h).status_code == 422
    assert wide_client.post("/api/label/queue/fill", json={"scan_id": 999}, headers=h).status_code == 404
    reader = wide_client.post("/api/label/queue/fill", json={}, headers=auth(wide_project.reader_token))
    assert reader.status_code in (401, 403)
