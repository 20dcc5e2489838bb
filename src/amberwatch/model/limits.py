"""The ranges a model file's numbers must lie in: a damaged or hand-edited file is refused when it is loaded, not
when a scan hangs on a halo of 1e9 px or the database refuses a NaN threshold."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

from amberwatch.errors import InvalidInputError

# Model fields (threshold, resolution) that are plain numbers: (lowest, highest), both allowed.
MODEL_LIMITS: dict[str, tuple[float, float]] = {"threshold": (0.0, 1.0), "resolution_m_per_px": (1e-3, 1e3)}


def check_limits(owner: str, values: Mapping[str, object], limits: Mapping[str, tuple[float, float]]) -> None:
    """InvalidInputError naming owner, the field and its value unless every limited value is a finite number within
    its (lowest, highest)."""
    for name, (low, high) in limits.items():
        value = values[name]
        number = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not (number and math.isfinite(value) and low <= value <= high):
            raise InvalidInputError(f"{owner} {name} {value!r} is out of range (expected {low:g} to {high:g})")
