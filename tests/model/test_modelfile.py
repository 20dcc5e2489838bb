"""A model is what it claims: its content digest, the registry's file sha256, and numbers a scan can run with."""

from __future__ import annotations

import hashlib
import io
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import amberwatch.model as model
from amberwatch.errors import ModelError
from amberwatch.model.classifier import payload_bytes
from amberwatch.model.registry import ModelRegistry
from tests.fixtures.fifo import finishes

SHA256 = r"[0-9a-f]{64}"
DIGEST_KEY = "content_sha256"  # the file format's entry (classifier.DIGEST_KEY)


@pytest.fixture(scope="module")
def cnn() -> model.Classifier:
    return model.load(model.BUNDLED_CNN_PATH)


def _flip_in_largest_tensor(path: Path, clf: model.Classifier, n_bytes: int = 2000) -> None:
    """Invert n_bytes in the middle of the largest weight's stored bytes (the file stays readable to torch)."""
    weights = max((t for sd in clf.state_dicts for t in sd.values()), key=lambda t: t.numel() * t.element_size())
    data = bytearray(path.read_bytes())
    start = data.find(weights.contiguous().numpy().tobytes())
    assert start > 0 and weights.numel() * weights.element_size() > n_bytes
    start += (weights.numel() * weights.element_size() - n_bytes) // 2
    data[start : start + n_bytes] = bytes(b ^ 0xFF for b in data[start : start + n_bytes])
    path.write_bytes(bytes(data))


def _legacy_bytes(clf) -> bytes:
    """The model as a file written before the content digest (none in it)."""
    payload = torch.load(io.BytesIO(clf.to_bytes()), weights_only=True)
    payload.pop(DIGEST_KEY, None)
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def test_a_model_file_with_flipped_bytes_is_refused_naming_both_digests(cnn, tmp_path):
    path = tmp_path / "flipped.pt"
    cnn.save(path)
    assert model.load(path).threshold == cnn.threshold  # the digest of an intact file checks out
    _flip_in_largest_tensor(path, cnn)
    with pytest.raises(ModelError, match=rf"flipped\.pt.*sha256 {SHA256}.*records {SHA256}") as err:
        model.load(path)
    digests = re.findall(SHA256, str(err.value))
    assert len(set(digests)) == 2


def test_the_registry_refuses_a_file_that_is_not_the_one_it_registered(cnn, tmp_path):
    db = tmp_path / "project.sqlite"
    with ModelRegistry.open(db) as registry:
        info = registry.register(cnn, note="test")
        assert registry.load(1).threshold == cnn.threshold
        # A file from before the content digest carries none: it loads alone, but it is not the registered file.
        legacy = tmp_path / "legacy.pt"
        legacy.write_bytes(_legacy_bytes(cnn))
        assert model.load(legacy).threshold == cnn.threshold
        legacy_sha = hashlib.sha256(legacy.read_bytes()).hexdigest()
        os.replace(legacy, info.path)
        with pytest.raises(ModelError, match=rf"v1\.pt.*{legacy_sha}.*registry records {info.file_sha256}"):
            registry.load(1)
        # A registered file with flipped bytes is refused too (by both checks: the registry's comes first).
        cnn.save(info.path)
        _flip_in_largest_tensor(info.path, cnn)
        with pytest.raises(ModelError, match=rf"v1\.pt.*registry records {info.file_sha256}"):
            registry.load(1)


def test_files_without_a_digest_still_load(cnn):
    for path in (model.BUNDLED_PATH, model.BUNDLED_CNN_PATH):  # the bundled files carry theirs
        assert DIGEST_KEY in torch.load(path, weights_only=True)
        assert model.load(path).version is not None
    again = model.from_bytes(_legacy_bytes(cnn), "legacy")
    chip = np.full((64, 64, 3), 120, np.uint8)
    assert again.predict_proba([chip])[0] == cnn.predict_proba([chip])[0]


@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), -0.1, 1.5])
def test_a_threshold_that_is_not_a_probability_is_refused_at_load(cnn, threshold):
    payload = {**cnn.payload(), "threshold": threshold}
    with pytest.raises(ModelError, match=rf"edited\.pt.*threshold {threshold!r} is out of range"):
        model.from_bytes(payload_bytes(payload), "edited.pt")


@pytest.mark.parametrize(
    ("field", "value"),
    [("halo_px", 1e9), ("chunk_px", 0), ("window_cells", 10**6), ("cell_px", 24), ("scale", float("nan"))],
)
def test_absurd_recipe_values_are_refused_at_load(field, value):
    bundled = model.load()
    payload = bundled.payload()
    payload["recipe"] = {**payload["recipe"], field: value}
    with pytest.raises(ModelError, match=rf"edited\.pt.*recipe {field}"):
        model.from_bytes(payload_bytes(payload), "edited.pt")


def test_absurd_network_values_are_refused_at_load(cnn):
    payload = cnn.payload()
    payload["net_configs"] = [{**c, "window_cells": 10**6} for c in payload["net_configs"]]
    with pytest.raises(ModelError, match=r"edited\.pt.*network window_cells 1000000 is out of range"):
        model.from_bytes(payload_bytes(payload), "edited.pt")


def test_a_fifo_or_folder_is_not_read_as_a_model_file(tmp_path):
    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)
    with pytest.raises(ModelError, match=r"model\.pt.*not a regular file"):
        finishes(lambda: model.load(fifo), fifo, seconds=10)
    (tmp_path / "folder.pt").mkdir()
    with pytest.raises(ModelError, match=r"folder\.pt.*not a regular file"):
        model.load(tmp_path / "folder.pt")
