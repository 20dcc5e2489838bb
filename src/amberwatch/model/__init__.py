"""The mining classifier: training, loading, prediction and evaluation.

The names below load lazily (PEP 562 ``__getattr__``): importing ``amberwatch.model`` or one of its light
modules (the CLI's ``commands``) must not import torch; the first use of a name imports its module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from amberwatch.model.classifier import Classifier
    from amberwatch.model.modelfile import (
        BUNDLED_CNN_PATH,
        BUNDLED_PATH,
        Model,
        from_bytes,
        load,
    )
    from amberwatch.model.pretrained import PretrainedClassifier

_LAZY = {
    "Classifier": "amberwatch.model.classifier",
    "BUNDLED_CNN_PATH": "amberwatch.model.modelfile",
    "BUNDLED_PATH": "amberwatch.model.modelfile",
    "Model": "amberwatch.model.modelfile",
    "from_bytes": "amberwatch.model.modelfile",
    "load": "amberwatch.model.modelfile",
    "PretrainedClassifier": "amberwatch.model.pretrained",
}

__all__ = ["BUNDLED_CNN_PATH", "BUNDLED_PATH", "Classifier", "Model", "PretrainedClassifier", "from_bytes", "load"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
