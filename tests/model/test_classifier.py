"""The CNN Classifier API on the bundled CNN model v1: sizes and modes, grid shape and consistency, file errors."""

from __future__ import annotations

import numpy as np
import pytest

import amberwatch.model as model
from amberwatch.errors import ImageError, InvalidInputError, ModelError


@pytest.fixture(scope="module")
def clf() -> model.Classifier:
    return model.load(model.BUNDLED_CNN_PATH)


def test_bundled_cnn_model_loads_with_metadata(clf):
    assert clf.version == "0"
    assert 0 < clf.threshold < 1
    assert clf.cell_px == 32 and clf.context_px % clf.cell_px == 0
    assert 0.3 < clf.resolution_m_per_px < 0.8
    for key in ("fingerprint", "counts", "cv", "seed", "created_at", "package_version", "input_px"):
        assert key in clf.metadata
    assert model.BUNDLED_CNN_PATH.stat().st_size < 5_000_000


def test_predict_proba_any_size_and_mode(clf):
    rng = np.random.default_rng(0)
    chips = [
        rng.integers(0, 255, (256, 256, 3), dtype=np.uint8),
        rng.integers(0, 255, (17, 301, 3), dtype=np.uint8),  # thin strip
        rng.integers(0, 255, (5, 5, 3), dtype=np.uint8),  # tiny
        rng.integers(0, 255, (120, 90), dtype=np.uint8),  # grayscale
        rng.integers(0, 255, (100, 100, 4), dtype=np.uint8),  # RGBA
        rng.integers(0, 65535, (64, 80), dtype=np.uint16),  # 16-bit
        rng.integers(0, 65535, (64, 80, 3), dtype=np.uint16),  # 16-bit RGB
    ]
    p = clf.predict_proba(chips)
    assert p.shape == (len(chips),) and p.dtype == np.float32
    assert np.all((p >= 0) & (p <= 1))
    # Batching by shape must not change a chip's score.
    assert clf.predict_proba(chips[:1])[0] == pytest.approx(p[0], abs=1e-5)


def test_predict_proba_refuses_bad_arrays(clf):
    with pytest.raises(ImageError, match="chip 1"):
        clf.predict_proba([np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10, 7), np.uint8)])
    with pytest.raises(ImageError, match="chip 0"):
        clf.predict_proba([np.zeros((0, 10, 3), np.uint8)])


def test_predict_grid_shape_and_consistency(clf):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (96, 160, 3), dtype=np.uint8)
    grid = clf.predict_grid(image)
    assert grid.shape == (3, 5) and grid.dtype == np.float32
    # A window_cells x window_cells image: its centre cell pools every cell, exactly like predict_proba.
    side = clf.net_config.window_cells * clf.cell_px
    chip = rng.integers(0, 255, (side, side, 3), dtype=np.uint8)
    centre = clf.predict_grid(chip)[side // clf.cell_px // 2, side // clf.cell_px // 2]
    assert centre == pytest.approx(clf.predict_proba([chip])[0], abs=1e-4)
    with pytest.raises(InvalidInputError, match="cell_px"):
        clf.predict_grid(np.zeros((100, 96, 3), np.uint8))
    inner, embeddings = clf.grid_and_cell_embeddings(image, margin_cells=1)  # a scan leaves its context out
    np.testing.assert_array_equal(inner, grid[1:-1, 1:-1])
    assert embeddings is None
    with pytest.raises(InvalidInputError, match="margin of 2 cells leaves nothing of a 3x5 map"):
        clf.grid_and_cell_embeddings(image, margin_cells=2)


def test_save_roundtrip_and_corrupt_file(clf, tmp_path):
    path = tmp_path / "m.pt"
    clf.save(path)
    again = model.load(path)
    chip = np.full((64, 64, 3), 120, np.uint8)
    assert again.predict_proba([chip])[0] == pytest.approx(clf.predict_proba([chip])[0], abs=1e-6)
    assert again.metadata == clf.metadata and again.threshold == clf.threshold
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ModelError, match=r"corrupt.pt"):
        model.load(bad)
    with pytest.raises(ModelError, match=r"missing.pt"):
        model.load(tmp_path / "missing.pt")
    not_model = tmp_path / "text.pt"
    not_model.write_text("hello")
    with pytest.raises(ModelError, match=r"text.pt"):
        model.load(not_model)
