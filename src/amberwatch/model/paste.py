"""Copy-paste augmentation: real pits from training positives composited onto negatives of other places/seasons.

The positives come from few places and 3 dates, so place, season and colour are confounded with the label.
Pasting the bright pit rims of a positive (found by local brightness, no manual masks) onto a negative
chip from another place/date makes positives on every background the negatives cover. Bright blobs of
negatives (snow, roads, sand) are pasted onto negatives too, labelled 0, so the seam itself says nothing.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

# At the network's 0.76 m/px: pits are ~4-15 px across; the local mean spans ~16 m.
LOCAL_MEAN_PX = 21
BRIGHTER_BY = 28.0  # 0..255 luminance above the local mean
MIN_BLOB_PX, MAX_BLOB_PX = 2, 600
GROW_PX = 2  # include the dark water centre and the rim's shadow


def bright_blob_mask(chip: np.ndarray) -> np.ndarray:
    """Boolean HxW mask of compact blobs much brighter than their surroundings (pit rims, snow patches...)."""
    lum = chip.astype(np.float32).mean(axis=2)
    brighter = (lum - ndi.uniform_filter(lum, LOCAL_MEAN_PX, mode="reflect")) > BRIGHTER_BY
    labels, n = ndi.label(brighter)
    if n == 0:
        return brighter
    sizes = ndi.sum(brighter, labels, index=np.arange(1, n + 1))
    keep = np.isin(labels, 1 + np.flatnonzero((sizes >= MIN_BLOB_PX) & (sizes <= MAX_BLOB_PX)))
    return ndi.binary_dilation(keep, iterations=GROW_PX)


def composite(background: np.ndarray, donor: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Background chip with the donor's masked pixels pasted at a random offset (random flip/rotation, soft edge).

    The pits keep their own colours: giving them the background's mean colour lowered block CV
    (scripts/experiments/RESULTS.md).
    """
    k = int(rng.integers(0, 4))
    donor, mask = np.rot90(donor, k), np.rot90(mask, k)
    if rng.random() < 0.5:
        donor, mask = donor[:, ::-1], mask[:, ::-1]
    h, w = min(background.shape[0], donor.shape[0]), min(background.shape[1], donor.shape[1])
    by, bx = int(rng.integers(0, background.shape[0] - h + 1)), int(rng.integers(0, background.shape[1] - w + 1))
    dy, dx = int(rng.integers(0, donor.shape[0] - h + 1)), int(rng.integers(0, donor.shape[1] - w + 1))
    alpha = ndi.gaussian_filter(mask[dy : dy + h, dx : dx + w].astype(np.float32), 0.8)[:, :, None]
    out = background.astype(np.float32).copy()
    region = out[by : by + h, bx : bx + w]
    out[by : by + h, bx : bx + w] = region * (1 - alpha) + donor[dy : dy + h, dx : dx + w] * alpha
    return out


class PitPaster:
    """Draws composite training chips from the training set's own positives and negatives."""

    def __init__(self, chips: list[np.ndarray], labels: np.ndarray, min_coverage: float = 0.01) -> None:
        masks = [bright_blob_mask(c) for c in chips]
        ok = np.array([m.mean() >= min_coverage for m in masks])
        self.chips, self.masks = chips, masks
        self.negatives = np.flatnonzero(labels == 0)
        self.pos_donors = np.flatnonzero((labels == 1) & ok)
        self.neg_donors = np.flatnonzero((labels == 0) & ok)

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        """One composite chip and its label: pits of a positive (1) or bright blobs of a negative (0) on a negative."""
        background = self.chips[int(rng.choice(self.negatives))]
        use_pos = rng.random() < 0.5 and len(self.pos_donors) > 0
        donors = self.pos_donors if use_pos or len(self.neg_donors) == 0 else self.neg_donors
        d = int(rng.choice(donors))
        return composite(background, self.chips[d], self.masks[d], rng), int(use_pos)
