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
    block_targets,
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


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2), st.floats(0.2, 5.0)), min_size=1, max_size=6),
    st.sampled_from([DESKTOP, PHONE]),
    st.integers(0, 5),
)
def test_any_block_with_aspects_is_tiled_exactly(items: list[tuple[int, float]], layout, block_no: int) -> None:
    classes, aspects = [c for c, _ in items], [a for _, a in items]
    _assert_tiled(pack_block(classes, layout, aspects, block_no), len(items))


def _plain_rows(p: BlockPacking) -> list[int]:
    """Rows where three or more fragments of one shape start side by side and fill the whole width."""
    plain = []
    for row in range(p.rows):
        starting = [q for q in p.placements if q.row == row]
        shapes = {(q.width_cells, q.height_cells) for q in starting}
        if len(starting) >= 3 and len(shapes) == 1 and sum(q.width_cells for q in starting) == p.columns:
            plain.append(row)
    return plain


@pytest.mark.parametrize("n_slots", [1, 2, 3, 4, 6])
def test_equal_sites_still_pack_like_tetris(n_slots: int) -> None:
    """12 sites of one size used to become a plain 3-column grid of 2x2 cells on desktop."""
    classes = size_classes_by_area([8.0] * 12)
    assert set(classes) == {1}  # equal sites keep one size class...
    start = 0
    shapes: set[tuple[int, int]] = set()
    for block_no, size in enumerate(split_into_blocks(12, n_slots)):
        for layout in (DESKTOP, PHONE):
            p = pack_block(classes[start : start + size], layout, block_no=block_no)
            _assert_tiled(p, size)
            # ...but not one shape: a block of identical rectangles is a plain grid.
            assert len({(q.width_cells, q.height_cells) for q in p.placements}) >= 2, (layout.name, p)
            if layout is DESKTOP:
                assert _plain_rows(p) == [], p
                shapes |= {(q.width_cells, q.height_cells) for q in p.placements}
        start += size
    assert len(shapes) >= 2


def test_blocks_of_equal_sites_alternate_their_big_fragment() -> None:
    first, second = pack_block([1, 1, 1], DESKTOP, block_no=0), pack_block([1, 1, 1], DESKTOP, block_no=1)
    assert first.placements[0].area_cells > first.placements[1].area_cells
    assert second.placements[1].area_cells > second.placements[0].area_cells


def test_wide_and_tall_sites_get_wide_and_tall_cells() -> None:
    targets = block_targets([0, 0, 1], DESKTOP, [3.0, 0.3, 1.0])
    assert targets == [(2.0, 1.0), (1.0, 2.0), (2.0, 2.0)]
    assert block_targets([2, 1], DESKTOP, [0.3, 0.3]) == [(2.0, 3.0), (2.0, 3.0)]
    p = pack_block([1, 0, 1, 0], DESKTOP, [2.5, 1.0, 0.4, 1.0])
    _assert_tiled(p, 4)
    wide, tall = p.placements[0], p.placements[2]
    assert wide.width_cells > wide.height_cells
    assert tall.height_cells >= tall.width_cells  # never a wide cell for a tall site
    with pytest.raises(InvalidInputError, match="2 aspect ratios given for 3"):
        pack_block([1, 1, 1], DESKTOP, [1.0, 2.0])


def test_large_fragments_get_more_cells_than_small_ones() -> None:
    p = pack_block([2, 0, 0, 1, 0], DESKTOP)
    _assert_tiled(p, 5)
    large, small = p.placements[0], p.placements[1]
    assert large.area_cells > small.area_cells
    assert large.area_cells >= 4


def test_a_small_first_fragment_does_not_squeeze_the_others() -> None:
    """[small, large, medium] once packed the medium one into a single cell beside a 5x2 large one."""
    p = pack_block([0, 2, 1], DESKTOP)
    _assert_tiled(p, 3)
    small, large, medium = p.placements
    assert large.area_cells > medium.area_cells >= 4 > small.area_cells


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
