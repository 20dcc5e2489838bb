"""Finding no-data in imagery and fragment windows that keep out of it."""

from __future__ import annotations

import numpy as np

from amberwatch.review.chips import nodata_mask
from amberwatch.story.nodata import Window, best_window, nodata_share, trim_window


def _image(width: int = 400, height: int = 300, nodata_cols: int = 120) -> np.ndarray:
    rng = np.random.default_rng(1)
    px = rng.integers(40, 200, size=(height, width, 3), dtype=np.uint8)
    px[:, :nodata_cols] = 0  # no imagery on the west side
    px[150:156, 300:306] = 3  # a small dark pit inside the imagery is not no-data
    return px


def test_mask_finds_border_no_data_but_not_dark_pits() -> None:
    mask = nodata_mask(_image())
    assert mask[:, :120].all()
    assert not mask[150:156, 300:306].any()
    assert mask[:, 122:].sum() == 0  # grown by one pixel only
    assert not nodata_mask(_image(nodata_cols=0)).any()


def test_window_moves_out_of_no_data_keeping_the_site() -> None:
    mask = nodata_mask(_image())
    site = Window(140, 120, 170, 160)
    win = best_window(mask, 160, 160, site)
    assert win.contains(site) and (win.width, win.height) == (160, 160)
    assert nodata_share(mask, win) == 0.0
    assert win.x0 >= 121
    # Without no-data the window is centred on the site.
    centred = best_window(np.zeros_like(mask), 160, 160, site)
    assert (centred.x0, centred.y0) == (75, 60)


def test_trim_cuts_edges_but_never_into_the_site() -> None:
    mask = nodata_mask(_image())
    site = Window(125, 120, 170, 160)
    win = trim_window(mask, Window(60, 60, 260, 260), site)
    assert win.contains(site)
    assert win.x0 >= 121 and (win.y0, win.x1, win.y1) == (60, 260, 260)  # only the west edge crossed no-data
    # A site reaching into no-data keeps its part of it: the edge stops at the site.
    inside = Window(100, 120, 170, 160)
    assert trim_window(mask, Window(60, 60, 260, 260), inside).x0 == 100
