"""No-data in imagery (black where a source has no pixels) and fragment windows that keep out of it.

Transparent parts of cached tiles decode as black, and tiles missing from the cache are drawn black by
mosaics, so a fragment cut at the edge of the imagery would show black bands. No-data is found from the
pixels by ``review.chips.nodata_mask`` (dark areas that touch the image's border or are large: a dark
water-filled pit inside the imagery is neither). A fragment's window is then moved (keeping the detection
inside) to where the imagery is, and its edges are cut back while they still cross no-data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EDGE_TOLERANCE = 0.01  # an edge line with at most this share of no-data stays
COMPLETE_TOLERANCE = 0.01  # a window with at most this share of no-data is a complete fragment


@dataclass(frozen=True)
class Window:
    """A pixel rectangle of an image: columns x0..x1-1, rows y0..y1-1."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        """Width in pixels."""
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        """Height in pixels."""
        return self.y1 - self.y0

    def contains(self, other: Window) -> bool:
        """Whether other lies inside this window."""
        return self.x0 <= other.x0 and self.y0 <= other.y0 and self.x1 >= other.x1 and self.y1 >= other.y1


def nodata_share(mask: np.ndarray, win: Window) -> float:
    """Share (0..1) of the window's pixels that hold no imagery."""
    part = mask[win.y0 : win.y1, win.x0 : win.x1]
    return float(part.mean()) if part.size else 1.0


def _starts(keep0: int, keep1: int, size: int, limit: int) -> np.ndarray:
    """Window starts along one axis that keep [keep0, keep1) inside and the window inside [0, limit)."""
    lo, hi = max(0, keep1 - size), min(limit - size, keep0)
    if lo > hi:  # the kept span is longer than the window: centre on it
        return np.array([min(max((keep0 + keep1 - size) // 2, 0), max(limit - size, 0))])
    return np.arange(lo, hi + 1)


def best_window(mask: np.ndarray, width: int, height: int, keep: Window) -> Window:
    """The width x height window holding keep with the least no-data, the most centred on keep among equals."""
    rows, cols = mask.shape
    width, height = min(width, cols), min(height, rows)
    xs = _starts(keep.x0, keep.x1, width, cols)
    ys = _starts(keep.y0, keep.y1, height, rows)
    table = _integral(mask)
    counts = table[np.ix_(ys + height, xs + width)] - table[np.ix_(ys, xs + width)]
    counts = counts - table[np.ix_(ys + height, xs)] + table[np.ix_(ys, xs)]
    # Counts within a thousandth of the window are equal: the centred window wins over a few stray pixels.
    coarse = counts // max(1, width * height // 1000)
    cx, cy = (keep.x0 + keep.x1 - width) / 2, (keep.y0 + keep.y1 - height) / 2
    off_centre = np.abs(ys[:, None] - cy) + np.abs(xs[None, :] - cx)
    iy, ix = divmod(int(np.lexsort((off_centre.ravel(), coarse.ravel()))[0]), len(xs))
    return Window(int(xs[ix]), int(ys[iy]), int(xs[ix]) + width, int(ys[iy]) + height)


def _integral(mask: np.ndarray) -> np.ndarray:
    """Summed-area table of a mask, padded so table[y1, x1] - ... counts a window."""
    return np.pad(mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))


def centred_window(mask: np.ndarray, keep: Window, side_px: int) -> Window | None:
    """The largest square of at most side_px centred on keep, holding keep and no no-data at all; None when
    even the smallest such square crosses no-data or the image's border."""
    rows, cols = mask.shape
    sides = np.arange(min(side_px, rows, cols), max(keep.width, keep.height) - 1, -1)
    x0, y0 = (keep.x0 + keep.x1 - sides) // 2, (keep.y0 + keep.y1 - sides) // 2
    inside = (x0 >= 0) & (y0 >= 0) & (x0 + sides <= cols) & (y0 + sides <= rows)
    sides, x0, y0 = sides[inside], x0[inside], y0[inside]
    x0, y0 = np.minimum(x0, keep.x0), np.minimum(y0, keep.y0)  # an odd remainder never drops keep's last pixel
    x1, y1 = np.maximum(x0 + sides, keep.x1), np.maximum(y0 + sides, keep.y1)
    ok = (x1 <= cols) & (y1 <= rows)
    x0, y0, x1, y1 = x0[ok], y0[ok], x1[ok], y1[ok]
    table = _integral(mask)
    counts = table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]
    clean = np.flatnonzero(counts == 0)
    if not len(clean):
        return None
    i = int(clean[0])  # sides run from the largest down
    return Window(int(x0[i]), int(y0[i]), int(x1[i]), int(y1[i]))


def _edge_shares(mask: np.ndarray, w: Window) -> dict[str, float]:
    return {
        "west": float(mask[w.y0 : w.y1, w.x0].mean()),
        "east": float(mask[w.y0 : w.y1, w.x1 - 1].mean()),
        "north": float(mask[w.y0, w.x0 : w.x1].mean()),
        "south": float(mask[w.y1 - 1, w.x0 : w.x1].mean()),
    }


def _cut(w: Window, edge: str) -> Window:
    x0, y0, x1, y1 = w.x0, w.y0, w.x1, w.y1
    if edge == "west":
        x0 += 1
    elif edge == "east":
        x1 -= 1
    elif edge == "north":
        y0 += 1
    else:
        y1 -= 1
    return Window(x0, y0, x1, y1)


def trim_window(mask: np.ndarray, win: Window, keep: Window) -> Window:
    """Cut the window's edges back, the worst first, while an edge line crosses no-data; never into keep."""
    while win.width > 1 and win.height > 1:
        shares = _edge_shares(mask, win)
        edges = sorted((e for e in shares if shares[e] > EDGE_TOLERANCE), key=lambda e: -shares[e])
        edges = [e for e in edges if _cut(win, e).contains(keep)]
        if not edges:
            return win
        win = _cut(win, edges[0])
    return win
