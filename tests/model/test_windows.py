"""Window means of per-cell maps: plain, with a margin, and from a grid twice as coarse as the cells."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from amberwatch.errors import InvalidInputError
from amberwatch.model.windows import box_mean, box_mean_2x


def _repeated(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Every value over its 2 x 2 cells, cropped to size."""
    return maps.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)[:, : size[0], : size[1]].contiguous()


def test_box_mean_is_avg_pool_without_the_padding():
    maps = torch.randn(3, 23, 17)
    for k in (1, 3, 15):
        expected = F.avg_pool2d(maps[None], k, stride=1, padding=k // 2, count_include_pad=False)[0]
        torch.testing.assert_close(box_mean(maps, k).float(), expected, rtol=1e-5, atol=1e-5)


def test_a_margin_keeps_the_inner_cells_of_the_same_means():
    maps = torch.randn(4, 30, 26)
    whole = box_mean(maps, 15)
    torch.testing.assert_close(box_mean(maps, 15, margin=6), whole[:, 6:-6, 6:-6])
    inner = box_mean(maps, 15, torch.float32, 6)
    torch.testing.assert_close(inner.view(4, -1), whole[:, 6:-6, 6:-6].reshape(4, -1).float())  # no copy needed
    with pytest.raises(InvalidInputError, match="margin of 13 cells leaves nothing of a 30x26 map"):
        box_mean(maps, 15, margin=13)
    with pytest.raises(InvalidInputError, match="odd window, got k=4"):
        box_mean(maps, 4)


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    crop_h=st.booleans(),
    crop_w=st.booleans(),
    k=st.sampled_from([3, 7, 11, 15]),
    margin=st.integers(0, 4),
)
def test_coarse_means_are_the_means_of_the_repeated_map(h, w, crop_h, crop_w, k, margin):
    size = (2 * h - crop_h, 2 * w - crop_w)
    if 2 * margin >= min(size):
        return
    maps = torch.from_numpy(np.random.default_rng(h * 100 + w).normal(3.0, 2.0, (3, h, w)))
    expected = box_mean(_repeated(maps, size), k, margin=margin)
    torch.testing.assert_close(box_mean_2x(maps, k, size, margin=margin), expected, rtol=1e-12, atol=1e-12)
    got32 = box_mean_2x(maps.float(), k, size, torch.float32, margin)
    torch.testing.assert_close(got32, expected.float(), rtol=1e-5, atol=1e-5)


def test_coarse_means_name_what_they_cannot_do():
    maps = torch.randn(2, 5, 5)
    with pytest.raises(InvalidInputError, match="3 mod 4 cells, got k=13"):
        box_mean_2x(maps, 13, (10, 10))
    with pytest.raises(InvalidInputError, match="a 5x5 map does not make 12x10 cells"):
        box_mean_2x(maps, 15, (12, 10))
