"""Issue 30 item 1: an accepted missed-site report is a reviewed correction that `retrain` trains on."""

from __future__ import annotations

import mercantile
import pytest

from amberwatch.db import connect
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.decode import encode_png
from amberwatch.labels.store import ExampleStore
from amberwatch.loop.retrain import retrain
from amberwatch.model.registry import ModelRegistry
from amberwatch.review.feedback import decide_report, record_report
from amberwatch.review.schema import ensure_schema as ensure_web_schema
from tests.fixtures.training import small_config

from .conftest import fill_store, insert_scan, make_chip

ZOOM = 18


@pytest.mark.slow
def test_an_accepted_report_is_a_correction_the_retrain_trains_on(db_path, rng, tmp_path):
    fill_store(db_path, rng, blocks=6, per_block=2)
    conn = connect(db_path)
    ensure_web_schema(conn)
    scan = insert_scan(conn, source_id="src", zoom=ZOOM)  # its AOI: 26.00..26.01, 51.00..51.01
    lon, lat = 26.005, 51.005
    centre = mercantile.tile(lon, lat, ZOOM)
    with TileCache(tmp_path / "tiles.sqlite") as cache:
        cache.register_source("src", "http://h/{z}/{x}/{y}.png")
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                png = encode_png(make_chip(rng, True, size=256))
                cache.put("src", ZOOM, centre.x + dx, centre.y + dy, png, content_type="image/png")
        sent = record_report(conn, cache, scan, (lon, lat), "pits in the forest", client="c1")
        done = decide_report(conn, cache, sent["id"], "accept", "olena")
    sha256 = ExampleStore(conn).get(done["example_id"]).sha256
    conn.close()

    result = retrain(db_path, config=small_config(epochs=2), n_folds=3, seed=0, force=True)

    assert result.counts["corrections"] == 1 and result.counts["mining"] == 13
    with ModelRegistry.open(db_path) as reg:
        assert sha256 in reg.training_sha256s(result.candidate_version)
