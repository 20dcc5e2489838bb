"""Tetris-like packing of fragments into a fixed column grid: no holes, no overlaps, reading order kept.

Each fragment has a size class (0 small, 1 medium, 2 large, from its hectares) and a target shape: its
class's square, made wide or tall after the site's footprint. In a block whose sites are all of one class,
one fragment (the top-ranked, or the second in every other block) is drawn a class larger, so equal sites
still make a tetris and not a plain grid. A block is packed into a ``columns`` x ``rows`` rectangle of
square cells: fragment i takes the first empty cell (row-major) as its top-left corner, and a
branch-and-bound search picks every fragment's shape (w x h cells) so that the rectangle is filled exactly
while the shapes stay close to their targets and not too elongated. The result is emitted as CSS grid
placements.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from amberwatch.errors import InvalidInputError

MAX_ROW_SPAN = 3
MAX_ASPECT = 3.0  # widest allowed w/h (and tallest h/w is 1/MIN_ASPECT)
MIN_ASPECT = 0.5
SEARCH_NODE_LIMIT = 200_000
SIMILAR_AREA_RATIO = 1.6
AREA_CELLS_WEIGHT = 0.6
AREA_RATIO_WEIGHT = 1.2
ASPECT_WEIGHT = 1.5
FLIP_COST = 3.0
WIDE_ASPECT = 1.4  # a footprint this much wider than tall (or taller than wide) gets a wide (or tall) target


@dataclass(frozen=True)
class GridLayout:
    """A column grid and the target shape (w, h in cells) of each size class."""

    name: str
    columns: int
    class_targets: tuple[tuple[int, int], ...]


DESKTOP = GridLayout("desktop", 6, ((1, 1), (2, 2), (3, 3)))
PHONE = GridLayout("phone", 4, ((1, 1), (2, 2), (3, 3)))


@dataclass(frozen=True)
class Placement:
    """Where one fragment sits in its block: 0-based column and row of its top-left cell, spans in cells."""

    index: int
    col: int
    row: int
    width_cells: int
    height_cells: int

    @property
    def area_cells(self) -> int:
        """Number of grid cells covered."""
        return self.width_cells * self.height_cells


@dataclass(frozen=True)
class BlockPacking:
    """A packed block: its grid size and one placement per fragment (same order as the input)."""

    columns: int
    rows: int
    placements: tuple[Placement, ...]


def size_classes_by_area(areas_ha: Sequence[float], n_classes: int = 3) -> list[int]:
    """Size class (0 = smallest) of each fragment from its hectares, on a log scale over the story's range.

    Sites of similar size (all within a factor SIMILAR_AREA_RATIO) share the middle class, so small
    differences are not exaggerated into large and small cells.
    """
    if not areas_ha:
        return []
    logs = [math.log(max(a, 1e-6)) for a in areas_ha]
    lo, hi = min(logs), max(logs)
    if hi - lo < math.log(SIMILAR_AREA_RATIO):
        return [n_classes // 2] * len(areas_ha)
    return [min(n_classes - 1, int((v - lo) / (hi - lo) * n_classes)) for v in logs]


def _shapes(columns: int) -> list[tuple[int, int]]:
    return [
        (w, h) for w in range(1, columns + 1) for h in range(1, MAX_ROW_SPAN + 1) if MIN_ASPECT <= w / h <= MAX_ASPECT
    ]


def _shape_cost(shape: tuple[int, int], target: tuple[float, float]) -> float:
    """How far a shape is from its target: area off in cells and in ratio (so a 1x1 for a 2x2 costs more than a
    3x2 for a 3x3), aspect off, and a penalty for turning a wide site's cell tall or the other way round."""
    w, h = shape
    tw, th = target
    flipped = (w - h) * (tw - th) < 0
    return (
        AREA_CELLS_WEIGHT * abs(w * h - tw * th)
        + AREA_RATIO_WEIGHT * abs(math.log((w * h) / (tw * th)))
        + ASPECT_WEIGHT * abs(math.log((w / h) / (tw / th)))
        + (FLIP_COST if flipped else 0.0)
    )


def _oriented(target: tuple[int, int], aspect: float) -> tuple[float, float]:
    """The class's square target made a cell wider (w/h >= WIDE_ASPECT) or taller (or narrower, at the row cap)."""
    w, h = target
    if aspect >= WIDE_ASPECT:
        return (w + 1.0, float(h))
    if aspect <= 1 / WIDE_ASPECT:
        return (float(w), h + 1.0) if h < MAX_ROW_SPAN else (w - 1.0, float(h))
    return (float(w), float(h))


def block_targets(
    size_classes: Sequence[int], layout: GridLayout, aspects: Sequence[float] | None = None, block_no: int = 0
) -> list[tuple[float, float]]:
    """Target shape (w, h in cells) of each fragment of a block: its class, its footprint's aspect, its rank.

    When every fragment of the block has the same class, every third of them is drawn a class larger, from
    the first (top-ranked) in even blocks and from the second in odd ones, so that blocks of equal sites differ
    and no row is a plain row of equal cells.
    """
    n_classes = len(layout.class_targets)
    for c in size_classes:
        if not 0 <= c < n_classes:
            raise InvalidInputError(f"size class {c!r} is not one of 0..{n_classes - 1}")
    ratios = list(aspects) if aspects is not None else [1.0] * len(size_classes)
    if len(ratios) != len(size_classes):
        raise InvalidInputError(f"{len(ratios)} aspect ratios given for {len(size_classes)} fragments")
    classes = list(size_classes)
    if len(classes) >= 2 and len(set(classes)) == 1:
        lead = block_no % 2 if len(classes) >= 3 else 0
        big = {i for i in range(len(classes)) if i % 3 == lead}
        if classes[0] < n_classes - 1:
            classes = [c + 1 if i in big else c for i, c in enumerate(classes)]
        else:
            classes = [c if i in big else c - 1 for i, c in enumerate(classes)]
    return [_oriented(layout.class_targets[c], a) for c, a in zip(classes, ratios)]


def pack_block(
    size_classes: Sequence[int], layout: GridLayout, aspects: Sequence[float] | None = None, block_no: int = 0
) -> BlockPacking:
    """Pack fragments of the given size classes (and footprint aspects w/h) into ``layout.columns`` columns with
    no holes or overlaps; ``block_no`` (the block's place on the page) varies blocks of equal sites."""
    n = len(size_classes)
    if n == 0:
        raise InvalidInputError("cannot pack an empty block of fragments")
    cols = layout.columns
    targets = block_targets(size_classes, layout, aspects, block_no)
    shapes = _shapes(cols)
    max_area = max(w * h for w, h in shapes)
    target_area = sum(w * h for w, h in targets)
    min_rows = max(1, math.ceil(n / cols))
    best: tuple[float, int, list[tuple[int, int, int, int]]] | None = None
    base = max(min_rows, round(target_area / cols))
    candidates = sorted({r for r in range(base - 2, base + 3) if r >= min_rows and n * max_area >= r * cols})
    for rows in candidates:
        found = _search(targets, shapes, cols, rows, best[0] if best else math.inf)
        if found is not None:
            cost = found[0] + 0.75 * abs(rows * cols - target_area)
            if best is None or cost < best[0]:
                best = (cost, rows, found[1])
    if best is None:
        return _fallback(n, cols)
    _, rows, cells = best
    return BlockPacking(cols, rows, tuple(Placement(i, c, r, w, h) for i, (c, r, w, h) in enumerate(cells)))


class _Grid:
    """Which cells of a cols x rows block are taken (row-major)."""

    def __init__(self, cols: int, rows: int) -> None:
        self.cols, self.rows = cols, rows
        self.total = cols * rows
        self.taken = [False] * self.total

    def first_empty(self, start: int) -> int:
        for k in range(start, self.total):
            if not self.taken[k]:
                return k
        return self.total

    def fits(self, col: int, row: int, w: int, h: int) -> bool:
        if col + w > self.cols or row + h > self.rows:
            return False
        return all(not self.taken[(row + dr) * self.cols + col + dc] for dr in range(h) for dc in range(w))

    def mark(self, col: int, row: int, w: int, h: int, value: bool) -> None:
        for dr in range(h):
            for dc in range(w):
                self.taken[(row + dr) * self.cols + col + dc] = value


class _BranchAndBound:
    """The search state of _search: cheapest exact filling found so far and the nodes visited."""

    def __init__(self, targets: list[tuple[float, float]], shapes: list[tuple[int, int]], grid: _Grid, bound: float):
        self.n = len(targets)
        self.grid = grid
        self.ranked = [sorted(shapes, key=lambda s, t=t: _shape_cost(s, t)) for t in targets]
        self.costs = [{s: _shape_cost(s, t) for s in shapes} for t in targets]
        self.max_area = max(w * h for w, h in shapes)
        self.best_cost = bound
        self.best_cells: list[tuple[int, int, int, int]] | None = None
        self.chosen: list[tuple[int, int, int, int]] = []
        self.nodes = 0

    def visit(self, i: int, start: int, filled: int, cost: float) -> None:
        self.nodes += 1
        if self.nodes > SEARCH_NODE_LIMIT or cost >= self.best_cost:
            return
        left = self.n - i
        empty = self.grid.total - filled
        if left == 0:
            if empty == 0:
                self.best_cost, self.best_cells = cost, list(self.chosen)
            return
        if empty < left or empty > left * self.max_area:
            return  # the remaining items cannot fill the remaining cells exactly
        k = self.grid.first_empty(start)
        row, col = divmod(k, self.grid.cols)
        for w, h in self.ranked[i]:
            if not self.grid.fits(col, row, w, h):
                continue
            self.grid.mark(col, row, w, h, True)
            self.chosen.append((col, row, w, h))
            self.visit(i + 1, k + 1, filled + w * h, cost + self.costs[i][(w, h)])
            self.chosen.pop()
            self.grid.mark(col, row, w, h, False)


def _search(
    targets: list[tuple[float, float]],
    shapes: list[tuple[int, int]],
    cols: int,
    rows: int,
    bound: float,
) -> tuple[float, list[tuple[int, int, int, int]]] | None:
    """Branch and bound over shapes; item i is anchored at the first empty cell after items < i."""
    search = _BranchAndBound(targets, shapes, _Grid(cols, rows), bound)
    search.visit(0, 0, 0, 0.0)
    if search.best_cells is None:
        return None
    return search.best_cost, search.best_cells


def _fallback(n: int, cols: int) -> BlockPacking:
    """Rows of equal-ish widths: always a valid hole-free packing (used only if the search gives up)."""
    placements: list[Placement] = []
    rows = math.ceil(n / cols)
    i = 0
    for r in range(rows):
        in_row = min(cols, n - i)
        widths = [cols // in_row + (1 if k < cols % in_row else 0) for k in range(in_row)]
        c = 0
        for w in widths:
            placements.append(Placement(i, c, r, w, 1))
            c += w
            i += 1
    return BlockPacking(cols, rows, tuple(placements))


def overlaps(a: Placement, b: Placement) -> bool:
    """Whether two placements share at least one cell."""
    return (
        a.col < b.col + b.width_cells
        and b.col < a.col + a.width_cells
        and a.row < b.row + b.height_cells
        and b.row < a.row + a.height_cells
    )


def check_packing(packing: BlockPacking) -> None:
    """Raise InvalidInputError unless the placements tile the block's rectangle exactly."""
    covered = [[-1] * packing.columns for _ in range(packing.rows)]
    for p in packing.placements:
        if p.col < 0 or p.row < 0 or p.col + p.width_cells > packing.columns or p.row + p.height_cells > packing.rows:
            raise InvalidInputError(f"placement {p} lies outside the {packing.columns}x{packing.rows} block")
        for r in range(p.row, p.row + p.height_cells):
            for c in range(p.col, p.col + p.width_cells):
                if covered[r][c] != -1:
                    raise InvalidInputError(f"placements {covered[r][c]} and {p.index} overlap at cell ({c}, {r})")
                covered[r][c] = p.index
    holes = [(c, r) for r in range(packing.rows) for c in range(packing.columns) if covered[r][c] == -1]
    if holes:
        raise InvalidInputError(f"block of {packing.columns}x{packing.rows} has holes at cells {holes[:5]}")


def split_into_blocks(n_fragments: int, n_slots: int, *, min_size: int = 3, max_size: int = 6) -> list[int]:
    """Sizes of consecutive fragment blocks: as many as there are slots, each of min..max fragments when possible."""
    if n_fragments <= 0:
        return []
    n_slots = max(1, n_slots)
    n_blocks = max(math.ceil(n_fragments / max_size), min(n_slots, n_fragments // min_size or 1))
    base, extra = divmod(n_fragments, n_blocks)
    return [base + (1 if k < extra else 0) for k in range(n_blocks)]
