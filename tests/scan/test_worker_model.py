"""Every model a scan worker loads is checked: a file without a content digest against the sha256 the scan saw."""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import io
import sqlite3
import warnings

import pytest
import torch

from amberwatch.errors import ModelError, UnverifiedModelWarning
from amberwatch.imagery.types import ImageryRef, ground_resolution_m_per_px
from amberwatch.model.classifier import DIGEST_KEY
from amberwatch.model.modelfile import BUNDLED_PATH, load
from amberwatch.model.processes import pool_context
from amberwatch.model.registry import ModelRegistry
from amberwatch.scan.dask_runner import model_from_client
from amberwatch.scan.engine import resolve_model, scan_context
from amberwatch.scan.tiling import Unit
from amberwatch.scan.worker import init_worker, process_unit
from tests.scan.conftest import CENTER, ZOOM, put_image_tiles, texty_image, tile_origin


def old_format_bytes(threshold: float | None = None) -> bytes:
    """The bundled model as a file from before the content digest (optionally with another threshold)."""
    payload = torch.load(BUNDLED_PATH, map_location="cpu", weights_only=True)
    payload.pop(DIGEST_KEY)
    if threshold is not None:
        payload["threshold"] = threshold
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def context_for(clf, path, version, tile_server, tmp_path):
    return scan_context(
        clf,
        imagery=ImageryRef(tile_server.url),
        cache_path=str(tmp_path / "cache.mbtiles"),
        model_path=path,
        model_version=version,
        zoom=ZOOM,
        tile_res_m_per_px=ground_resolution_m_per_px(CENTER[1], ZOOM),
    )


def in_a_worker(unit: Unit, context):
    """process_unit in a fresh pool worker process, as a local scan runs it."""
    with cf.ProcessPoolExecutor(1, mp_context=pool_context(), initializer=init_worker) as pool:
        return pool.submit(process_unit, unit, context).result()


@pytest.mark.slow
def test_a_worker_refuses_a_tampered_old_format_file_given_by_path_or_registered(tile_server, tmp_path):
    x0, y0 = tile_origin((100, 0))
    x0, y0 = x0 // 8 * 8, y0 // 8 * 8
    put_image_tiles(tile_server, texty_image("positive2"), x0, y0, 2, 1)
    unit = Unit(parent=(x0 >> 3, y0 >> 3, ZOOM - 3), zoom=ZOOM, tiles=((x0, y0), (x0 + 1, y0)))

    by_path = tmp_path / "old.pt"
    by_path.write_bytes(old_format_bytes())
    with pytest.warns(UnverifiedModelWarning, match="old.pt.*no content digest"):  # once, where the scan loads it
        model = resolve_model(tmp_path / "project.db", str(by_path))
    path_context = context_for(model.clf, model.path, model.version, tile_server, tmp_path)
    assert path_context.model_sha256 == hashlib.sha256(by_path.read_bytes()).hexdigest()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnverifiedModelWarning)  # the workers load it checked: no second warning
        assert [t.status for t in in_a_worker(unit, path_context).tiles] == ["done", "done"]

    db = tmp_path / "project.db"
    with ModelRegistry.open(db) as registry:
        info = registry.register(load(), note="registered before model files carried a digest")
    info.path.write_bytes(old_format_bytes())  # as such a version's file is: no digest, the registry's sha256 only
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE model_versions SET file_sha256 = ?", (hashlib.sha256(info.path.read_bytes()).hexdigest(),))
    conn.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnverifiedModelWarning)  # vouched for by the registry's sha256
        model = resolve_model(db, "1")
    registry_context = context_for(model.clf, model.path, model.version, tile_server, tmp_path)

    # Both files are replaced after the scan loaded them, still without a digest: load() alone could not tell.
    by_path.write_bytes(old_format_bytes(threshold=0.01))
    info.path.write_bytes(old_format_bytes(threshold=0.01))
    for context, name in ((path_context, "old.pt"), (registry_context, "v1.pt")):
        with pytest.raises(ModelError, match=rf"{name}.*damaged or replaced model file.*the scan"):
            in_a_worker(unit, context)


def test_a_dask_worker_refuses_model_bytes_that_differ_from_the_sha256_the_client_sent():
    data = load().to_bytes()
    assert model_from_client(data, hashlib.sha256(data).hexdigest(), "0").threshold == load().threshold
    other = old_format_bytes(threshold=0.01)
    with pytest.raises(ModelError, match=r"model version 0 .*client sent"):
        model_from_client(other, hashlib.sha256(data).hexdigest(), "0")
