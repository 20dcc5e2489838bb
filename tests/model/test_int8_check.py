"""The int8 check a scan runs before it trusts the model's int8 backbone on this CPU."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import amberwatch.model as model
from amberwatch.errors import ModelError
from amberwatch.model.backbone_onnx import QUANTIZATION
from amberwatch.model.int8_check import Int8Check, mean_abs_dlogit


@pytest.fixture(scope="module")
def clf():
    return model.load()


def test_the_bundled_model_carries_its_check_and_passes_it_here(clf):
    cal = clf.int8
    assert cal.quantization == QUANTIZATION and len(cal.check_images) == 8 and cal.check_dlogit > 0
    assert all(im.dtype == np.uint8 and im.ndim == 3 and im.shape[2] == 3 for im in cal.check_images)
    check = clf.check_int8()
    assert check.passed and check.chips == 8
    # The integer maths is exact on every CPU: here measures what the calibration recorded.
    assert check.dlogit == pytest.approx(cal.check_dlogit, abs=1e-3)
    assert "int8 check passed on this CPU" in check.summary()


def test_the_check_survives_a_save_and_load(clf):
    again = model.from_bytes(clf.to_bytes(), "copy")
    assert again.int8 == clf.int8
    for a, b in zip(again.int8.check_images, clf.int8.check_images, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_model_far_from_fp32_here_fails_the_check(clf):
    cut = {name: [lo / 10, hi / 10] for name, (lo, hi) in clf.int8.ranges.items()}
    bad = model.from_bytes(clf.to_bytes(), "bad")
    bad.int8 = dataclasses.replace(bad.int8, ranges=cut)
    check = bad.check_int8()
    assert not check.passed and check.dlogit > check.limit
    assert "int8 check failed on this CPU" in check.summary()


def test_a_model_without_check_chips_or_of_another_quantization_is_not_trusted(clf):
    for change in ({"check_images": ()}, {"quantization": "u8s8-w8"}):
        other = model.from_bytes(clf.to_bytes(), "old")
        other.int8 = dataclasses.replace(other.int8, **change)
        check = other.check_int8()
        assert not check.passed and check.dlogit is None and "retrain it" in check.reason
        assert check.summary().startswith("int8 check not possible")


def test_the_check_needs_int8(clf):
    with pytest.raises(ModelError, match="no int8 calibration"):
        model.PretrainedClassifier(clf.head, clf.recipe).check_int8()


def test_limit_and_dlogit_arithmetic():
    assert Int8Check(8, 1.3, 1.0).passed and not Int8Check(8, 1.31, 1.0).passed
    assert Int8Check(8, 1.0, 1.0).limit == pytest.approx(1.3)
    assert Int8Check(8, 0.1, None).passed is False
    assert mean_abs_dlogit(np.array([0.0, 1.0]), np.array([1.5, 2.0]), 1.0) == pytest.approx(0.25)
    assert mean_abs_dlogit(np.zeros(0), np.zeros(0), 0.3) == 0.0
