"""Tetris-like packing: every block is tiled exactly (no holes, no overlaps), in reading order."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amberwatch.errors import InvalidInputError
from amberwatch.story.packing import (
    DESKTOP,
    PHONE,
    BlockPacking,
    Placement,
    check_packing,
    overlaps,
    pack_block,
    size_classes_by_area,
    split_into_blocks,
)


def _assert_tiled(p: BlockPacking, n: int) -> None:
    check_packing(p)
    assert len(p.placements) == n
    assert [q.index for q in p.placements] == list(range(n))
    assert sum(q.area_cells for q in p.placements) == p.columns * p.rows
    for a, b in itertools.combinations(p.placements, 2):
        assert not overlaps(a, b)
    # Reading order: top-left corners are in row-major order.
    anchors = [(q.row, q.col) for q in p.placements]
    assert anchors == sorted(anchors)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 2), min_size=1, max_size=6), st.sampled_from([DESKTOP, PHONE]))
def test_any_block_is_tiled_exactly(classes: list[int], layout) -> None:
    p = pack_block(classes, layout)
    assert p.columns == layout.columns
    _assert_tiled(p, len(classes))


def test_large_fragments_get_more_cells_than_small_ones() -> None:
    p = pack_block([2, 0, 0, 1, 0], DESKTOP)
    _assert_tiled(p, 5)
    large, small = p.placements[0], p.placements[1]
    assert large.area_cells > small.area_cells
    assert large.area_cells >= 4


def test_check_packing_finds_overlaps_and_holes() -> None:
    overlap = BlockPacking(2, 1, (Placement(0, 0, 0, 2, 1), Placement(1, 1, 0, 1, 1)))
    with pytest.raises(InvalidInputError, match="overlap"):
        check_packing(overlap)
    hole = BlockPacking(3, 1, (Placement(0, 0, 0, 1, 1), Placement(1, 1, 0, 1, 1)))
    with pytest.raises(InvalidInputError, match="holes"):
        check_packing(hole)
    outside = BlockPacking(2, 1, (Placement(0, 1, 0, 2, 1),))
    with pytest.raises(InvalidInputError, match="outside"):
        check_packing(outside)


def test_bad_inputs_are_refused_by_name() -> None:
    with pytest.raises(InvalidInputError, match="empty block"):
        pack_block([], DESKTOP)
    with pytest.raises(InvalidInputError, match="size class 7"):
        pack_block([0, 7], DESKTOP)


def test_size_classes_follow_hectares() -> None:
    assert size_classes_by_area([5.0, 0.2, 1.0]) == [2, 0, 1]
    classes = size_classes_by_area([0.1 * i for i in range(1, 13)])
    assert classes == sorted(classes)
    assert set(classes) == {0, 1, 2}
    assert size_classes_by_area([9.2, 8.2, 8.3]) == [1, 1, 1]  # similar sites, similar cells
    assert size_classes_by_area([]) == []


@given(st.integers(1, 60), st.integers(0, 30))
def test_blocks_cover_all_fragments(n: int, slots: int) -> None:
    sizes = split_into_blocks(n, slots)
    assert sum(sizes) == n
    assert all(1 <= s <= 6 for s in sizes)
