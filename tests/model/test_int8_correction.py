"""The int8 logit correction: the calibration mosaic and the ridge fit of the window errors."""

from __future__ import annotations

import numpy as np

from amberwatch.model.int8_correction import RIDGE_PER_WINDOW, SLOT_PX, calibration_mosaic, fit_correction


def test_mosaic_puts_every_chip_in_one_slot_and_leaves_the_rest_black():
    chips = [np.full((200 + 10 * i, 256, 3), 10 + i, dtype=np.uint8) for i in range(5)]
    mosaic = calibration_mosaic(chips)
    assert mosaic.shape == (3 * SLOT_PX, 3 * SLOT_PX, 3)  # 5 chips: 3 x 3 slots
    slots = mosaic.reshape(3, SLOT_PX, 3, SLOT_PX, 3).transpose(0, 2, 1, 3, 4).reshape(9, -1)
    values = sorted(int(s[0]) for s in slots if s.min() == s.max())
    assert values == [0, 0, 0, 0, 10, 11, 12, 13, 14]  # each chip whole (reflect-padded to the slot), 4 black
    np.testing.assert_array_equal(calibration_mosaic(chips), mosaic)  # a fixed order


def test_ridge_recovers_a_linear_error_and_its_mean():
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 2.0, (4000, 6))
    true = np.array([0.5, -0.25, 0.0, 0.1, 0.0, 0.3])
    dlogit = 0.8 + (x - 5.0) @ true + rng.normal(0, 0.05, len(x))
    weights, centre, mean = fit_correction(x, dlogit)
    np.testing.assert_allclose(weights, true / (1 + RIDGE_PER_WINDOW), atol=0.005)  # shrunk by the ridge
    np.testing.assert_allclose(centre, x.mean(axis=0), rtol=1e-6)
    assert abs(mean - dlogit.mean()) < 1e-9
