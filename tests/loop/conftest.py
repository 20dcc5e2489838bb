"""Fixtures of the correction-loop tests: tiny real classifiers and project DBs in tmp dirs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.fixtures.tileserver import tile_server  # noqa: F401


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


def insert_scan(conn, *, model_version: str = "0", parent_scan_id: int | None = None, imagery: str = "http://h/{z}/{x}/{y}.png",
                source_id: str = "src", zoom: int = 18, status: str = "finished") -> int:
    """Insert a scans row (results schema) and return its id."""
    from amberwatch.db import utc_now_iso
    from amberwatch.results.schema import ensure_schema

    ensure_schema(conn)
    aoi = '{"type": "Polygon", "coordinates": [[[26.0, 51.0], [26.01, 51.0], [26.01, 51.01], [26.0, 51.01], [26.0, 51.0]]]}'
    cur = conn.execute(
        "INSERT INTO scans (name, aoi_geojson, imagery, imagery_source_id, zoom, model_version, model_threshold,"
        " parent_scan_id, status, started_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, 0.5, ?, ?, ?, ?)",
        ("test", aoi, imagery, source_id, zoom, model_version, parent_scan_id, status, utc_now_iso(), utc_now_iso()),
    )
    return int(cur.lastrowid)


def insert_detection(conn, scan_id: int, west: float, south: float, east: float, north: float, area_ha: float,
                     *, model_version: str = "0", thumbnail: bytes | None = None) -> int:
    """Insert a rectangular detection and return its id."""
    import json

    from amberwatch.db import utc_now_iso

    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    cur = conn.execute(
        "INSERT INTO detections (scan_id, geometry_geojson, centroid_lon, centroid_lat, west, south, east, north,"
        " area_ha, mean_prob, max_prob, model_version, thumbnail, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0.8, 0.9, ?, ?, ?)",
        (scan_id, json.dumps({"type": "Polygon", "coordinates": [ring]}), (west + east) / 2, (south + north) / 2,
         west, south, east, north, area_ha, model_version, thumbnail, utc_now_iso()),
    )
    return int(cur.lastrowid)
