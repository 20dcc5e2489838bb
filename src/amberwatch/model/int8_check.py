"""The run-time check of a model's int8 backbone: int8 against fp32 on this CPU, on chips the model file carries.

Integer kernels differ between CPUs (VNNI or not, x86 or ARM). A model file records how far its int8 logits were
from fp32 on a few calibration chips where it was calibrated; a scan measures the same here before it trusts int8,
and scans in fp32 when this CPU does worse.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHECK_CHIPS = 8  # calibration chips a model file carries for the check (about 1 MB)
SLACK_RATIO = 1.25  # int8 passes while its mean |int8 - fp32| logit here is within this ratio of the recorded one
SLACK_LOGIT = 0.05  # ... plus this much (float differences between fp32 kernels)


@dataclass(frozen=True)
class Int8Check:
    """The outcome of the int8 check on this CPU: what was measured, what the model file records, and the verdict."""

    chips: int
    dlogit: float | None  # mean |int8 - fp32| logit on the check chips here (int8's logit shift taken off)
    recorded_dlogit: float | None  # the same where the model was calibrated
    reason: str | None = None  # why the check could not run (no check chips, older quantization, no int8 backbone)

    @property
    def limit(self) -> float | None:
        """The largest mean |int8 - fp32| logit that passes."""
        return None if self.recorded_dlogit is None else self.recorded_dlogit * SLACK_RATIO + SLACK_LOGIT

    @property
    def passed(self) -> bool:
        """Whether int8 agrees with fp32 here as closely as the model file records."""
        return self.reason is None and self.dlogit is not None and self.limit is not None and self.dlogit <= self.limit

    def summary(self) -> str:
        """One line for the scan's output: the figures and the verdict."""
        if self.reason is not None:
            return f"int8 check not possible: {self.reason}"
        verdict = "passed" if self.passed else "failed"
        return (
            f"int8 check {verdict} on this CPU: mean |int8 - fp32| logit {self.dlogit:.3f} on {self.chips} chips "
            f"(the model file records {self.recorded_dlogit:.3f}; limit {self.limit:.3f})"
        )

    def to_dict(self) -> dict:
        """Plain values for a scan's params."""
        return {
            "passed": self.passed,
            "chips": self.chips,
            "dlogit": self.dlogit,
            "recorded_dlogit": self.recorded_dlogit,
            "limit": self.limit,
            "reason": self.reason,
        }


def mean_abs_dlogit(fp32_logits: np.ndarray, int8_logits: np.ndarray, logit_shift: float | np.ndarray) -> float:
    """Mean |int8 - fp32| logit, the int8 logits' correction (as the scan takes it off: a shift, or one per chip)
    removed."""
    diff = np.asarray(int8_logits, dtype=np.float64) - logit_shift - np.asarray(fp32_logits, dtype=np.float64)
    return float(np.mean(np.abs(diff))) if diff.size else 0.0
