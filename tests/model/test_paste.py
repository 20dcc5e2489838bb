"""Pit copy-paste augmentation: blob masks, compositing, and the paster's labels."""

from __future__ import annotations

import numpy as np

from amberwatch.model.paste import PitPaster, bright_blob_mask, composite


def _field(value: int = 90, size: int = 64) -> np.ndarray:
    return np.full((size, size, 3), value, dtype=np.float32)


def _with_pits(base: np.ndarray, centres: list[tuple[int, int]], radius: int = 3) -> np.ndarray:
    out = base.copy()
    yy, xx = np.mgrid[: base.shape[0], : base.shape[1]]
    for cy, cx in centres:
        out[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = 230
    return out


def test_bright_blob_mask_finds_small_bright_blobs_only() -> None:
    chip = _with_pits(_field(), [(20, 20), (40, 45)])
    mask = bright_blob_mask(chip)
    assert mask[20, 20] and mask[40, 45] and not mask[5, 60]
    assert not bright_blob_mask(_field()).any()
    bright_half = _field()
    bright_half[:, 32:] = 230  # a large bright field is not a blob
    assert not bright_blob_mask(bright_half)[:, 40:].any()


def test_composite_pastes_only_masked_pixels() -> None:
    rng = np.random.default_rng(0)
    background, donor = _field(60), _with_pits(_field(120), [(32, 32)], radius=5)
    mask = bright_blob_mask(donor)
    out = composite(background, donor, mask, rng)
    assert out.shape == background.shape
    assert out.max() > 200  # the pit arrived
    assert np.median(out) == 60  # the background elsewhere is untouched


def test_paster_draws_both_labels_on_negative_backgrounds() -> None:
    rng = np.random.default_rng(1)
    chips = [_with_pits(_field(), [(20, 20), (30, 40)]), _with_pits(_field(70), [(10, 50)]), _field(50)]
    paster = PitPaster(chips, np.array([1, 0, 0]))
    draws = [paster.draw(rng) for _ in range(40)]
    assert {label for _, label in draws} == {0, 1}
    assert all(c.shape == (64, 64, 3) for c, _ in draws)
