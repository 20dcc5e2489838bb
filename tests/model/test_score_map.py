"""The bundled pretrained model's score map against the same windows classified alone, on Texty's whole images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import spearmanr

import amberwatch.model as model
from tests.model.conftest import TEXTY_DIR

TILES = TEXTY_DIR / "tiles"
pytestmark = pytest.mark.skipif(not TILES.is_dir(), reason="needs ../shared/data/texty-amber/tiles")


def _window_pairs(clf, image: np.ndarray, every: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(score-map value, score of the same window cut out with its pooling border and classified alone)."""
    cell, k, border = clf.cell_px, clf.recipe.window_cells, clf.recipe.border_px
    h, w = image.shape[:2]
    image = image[: h - h % cell, : w - w % cell]
    grid = clf.predict_grid(image)
    half, ring = k // 2, border // cell
    from_map, crops = [], []
    for r in range(half + ring, grid.shape[0] - half - ring, every):
        for c in range(half + ring, grid.shape[1] - half - ring, every):
            crops.append(
                image[
                    (r - half) * cell - border : (r + half + 1) * cell + border,
                    (c - half) * cell - border : (c + half + 1) * cell + border,
                ]
            )
            from_map.append(grid[r, c])
    with torch.inference_mode():
        feats = np.concatenate(
            [
                clf.pooled_features(torch.from_numpy(np.stack(crops[i : i + 16])).permute(0, 3, 1, 2).float())
                for i in range(0, len(crops), 16)
            ]
        )
    alone = 1 / (1 + np.exp(-clf.logits_from_features(feats)))
    return np.asarray(from_map), alone


def _agreement(clf, label: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Window pairs of every whole image; asserts the issue's agreement (same side and rank correlation >= 0.95)."""
    pairs = [_window_pairs(clf, np.asarray(Image.open(p).convert("RGB"))) for p in sorted(TILES.glob("*.png"))]
    from_map = np.concatenate([a for a, _ in pairs])
    alone = np.concatenate([b for _, b in pairs])
    assert len(from_map) > 500
    same_side = float(np.mean((from_map >= clf.threshold) == (alone >= clf.threshold)))
    rho = float(spearmanr(from_map, alone).correlation)
    print(f"{label}: {len(from_map)} windows on the same side of {clf.threshold:.3f} in {same_side:.3f}, rho {rho:.3f}")
    assert same_side >= 0.95
    assert rho >= 0.95
    return pairs


@pytest.mark.slow
def test_int8_score_map_agrees_with_fp32_windows_classified_alone():
    """The scan's default: maps through the int8 backbone (its logit shift taken off) against fp32 windows alone."""
    clf = model.load()
    clf.set_int8(True)
    _agreement(clf, "int8 map vs fp32 windows")
    assert clf._fast.int8  # the int8 backbone made the maps (no fallback to fp32)


@pytest.mark.slow
def test_score_map_agrees_with_windows_classified_alone():
    clf = model.load()
    pairs = _agreement(clf, "fp32 map vs fp32 windows")
    # The whole images with mining have windows over the threshold; the ones without have almost none.
    names = [p.stem for p in sorted(TILES.glob("*.png"))]
    hits = {n: float(np.mean(a >= clf.threshold)) for n, (a, _) in zip(names, pairs)}
    assert hits["positive1"] > 0.05 and hits["positive2"] > 0.05
    assert hits["negative1"] < 0.05 and hits["negative2"] < 0.05
