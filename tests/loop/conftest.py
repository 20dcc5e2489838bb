"""Fixtures of the correction-loop tests: tiny real classifiers and project DBs in tmp dirs."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def make_classifier(seed: int = 0, *, bias: float | None = None):
    """A small untrained (but real) Classifier; bias forces every P(mining) towards sigmoid(bias)."""
    from amberwatch.model.classifier import Classifier
    from amberwatch.model.network import MiningNet, NetConfig

    torch.manual_seed(seed)
    config = NetConfig(widths=(4, 8), downsample=2, window_cells=3)
    net = MiningNet(config)
    state = net.state_dict()
    if bias is not None:
        state["head.weight"] = torch.zeros_like(state["head.weight"])
        state["head.bias"] = torch.full_like(state["head.bias"], bias)
    return Classifier(config, [state], threshold=0.5, metadata={"seed": seed})


@pytest.fixture
def tiny_classifier():
    """Factory of small real classifiers."""
    return make_classifier


@pytest.fixture
def db_path(tmp_path):
    """Path of a fresh project DB file in a tmp dir."""
    return tmp_path / "project.db"


@pytest.fixture
def rng():
    """A seeded numpy random generator."""
    return np.random.default_rng(0)


def insert_scan(
    conn,
    *,
    model_version: str = "0",
    parent_scan_id: int | None = None,
    imagery: str = "http://h/{z}/{x}/{y}.png",
    source_id: str = "src",
    zoom: int = 18,
    status: str = "finished",
) -> int:
    """Insert a scans row (results schema) and return its id."""
    from amberwatch.db import utc_now_iso
    from amberwatch.results.store import ensure_schema

    ensure_schema(conn)
    ring = "[[26.0, 51.0], [26.01, 51.0], [26.01, 51.01], [26.0, 51.01], [26.0, 51.0]]"
    aoi = '{"type": "Polygon", "coordinates": [' + ring + "]}"
    cur = conn.execute(
        "INSERT INTO scans (name, aoi_geojson, imagery, imagery_source_id, zoom, model_version, model_threshold,"
        " parent_scan_id, status, started_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, 0.5, ?, ?, ?, ?)",
        ("test", aoi, imagery, source_id, zoom, model_version, parent_scan_id, status, utc_now_iso(), utc_now_iso()),
    )
    return int(cur.lastrowid)


def insert_detection(
    conn,
    scan_id: int,
    west: float,
    south: float,
    east: float,
    north: float,
    area_ha: float,
    *,
    model_version: str = "0",
    thumbnail: bytes | None = None,
) -> int:
    """Insert a rectangular detection and return its id."""
    import json

    from amberwatch.db import utc_now_iso

    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    cur = conn.execute(
        "INSERT INTO detections (scan_id, geometry_geojson, centroid_lon, centroid_lat, west, south, east, north,"
        " area_ha, mean_prob, max_prob, model_version, thumbnail, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0.8, 0.9, ?, ?, ?)",
        (
            scan_id,
            json.dumps({"type": "Polygon", "coordinates": [ring]}),
            (west + east) / 2,
            (south + north) / 2,
            west,
            south,
            east,
            north,
            area_ha,
            model_version,
            thumbnail,
            utc_now_iso(),
        ),
    )
    return int(cur.lastrowid)


def make_chip(rng: np.random.Generator, mining: bool, size: int = 64) -> np.ndarray:
    """A synthetic aerial chip: noisy meadow; mining adds sandy round pits, not-mining adds dark tree crowns."""
    img = np.empty((size, size, 3), dtype=np.float32)
    img[:] = (70, 100, 45)
    img += rng.normal(0, 8, (size, size, 1))
    yy, xx = np.mgrid[0:size, 0:size]
    for _ in range(int(rng.integers(4, 7))):
        cy, cx, r = rng.integers(6, size - 6), rng.integers(6, size - 6), rng.integers(3, 7)
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        if mining:
            img[disk] = (215, 205, 170)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 <= (r // 2) ** 2] = (40, 60, 70)
        else:
            img[disk] = (25, 50, 25)
    return np.clip(img, 0, 255).astype(np.uint8)


def fill_store(db_path, rng: np.random.Generator, *, blocks: int = 8, per_block: int = 3, corrections: int = 0):
    """Add base examples (source 'import') in `blocks` 0.1-degree blocks and optional 'review' corrections.

    Returns the ids of the correction examples.
    """
    from amberwatch.labels.store import ExampleStore

    ids = []
    with ExampleStore.open(db_path) as store:
        for b in range(blocks):
            lon, lat = 25.05 + 0.1 * b, 51.05
            for _ in range(per_block):
                store.add(make_chip(rng, True), "mining", lon=lon, lat=lat, source="import")
                store.add(make_chip(rng, False), "not_mining", category="field", lon=lon, lat=lat, source="import")
        for k in range(corrections):
            lon, lat = 25.05 + 0.1 * (k % blocks), 51.05
            eid, _ = store.add(
                make_chip(rng, False),
                "not_mining",
                category="quarry",
                lon=lon,
                lat=lat,
                source="review",
                added_by="reviewer",
            )
            ids.append(eid)
    return ids


def add_feedback(
    conn, detection_id: int, verdict: str, status: str, example_id: int | None = None, scan_id: int | None = None
) -> int:
    """Insert a decided web_feedback row (web schema) and return its id."""
    from amberwatch.db import utc_now_iso
    from amberwatch.review.schema import ensure_schema

    ensure_schema(conn)
    cur = conn.execute(
        "INSERT INTO web_feedback (detection_id, scan_id, lon, lat, verdict, category, client_hash, created_at,"
        " status, reviewed_by, reviewed_at, example_id) VALUES (?, ?, 25.0, 51.0, ?, ?, 'x', ?, ?, 'rev', ?, ?)",
        (
            detection_id,
            scan_id,
            verdict,
            "quarry" if verdict == "not_mining" else None,
            utc_now_iso(),
            status,
            utc_now_iso(),
            example_id,
        ),
    )
    return int(cur.lastrowid)
