"""Reading model files of either recipe: the CNN ensemble (format 1 and 2) and the pretrained head (format 2)."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import torch

from amberwatch.errors import ModelError
from amberwatch.model.classifier import FORMAT, FORMAT_VERSION, Classifier
from amberwatch.model.pretrained import PretrainedClassifier

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
BUNDLED_PATH = BUNDLED_DIR / "default.pt"  # recipe pretrained, version 2
BUNDLED_CNN_PATH = BUNDLED_DIR / "cnn-v1.pt"  # the CNN recipe's model v1, kept to compare recipes
Model = Classifier | PretrainedClassifier
_KINDS = {"cnn": Classifier, "pretrained": PretrainedClassifier}


def from_bytes(data: bytes, name: str = "<bytes>") -> Model:
    """A model from the bytes of a model file; ModelError naming `name` on anything unreadable or incompatible."""
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (
        RuntimeError,
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        zipfile.BadZipFile,
        OSError,
        AttributeError,
        KeyError,
        IndexError,
        TypeError,
    ) as exc:
        raise ModelError(f"{name}: not a readable amberwatch model file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"{name}: not an amberwatch model file")
    version = payload.get("format_version")
    if version not in (1, FORMAT_VERSION):
        raise ModelError(
            f"{name}: model format version {version!r} is not supported "
            f"(this amberwatch reads versions 1 and {FORMAT_VERSION})"
        )
    kind = payload.get("kind", "cnn")
    if kind not in _KINDS:
        raise ModelError(f"{name}: unknown model kind {kind!r} (expected one of {sorted(_KINDS)})")
    try:
        return _KINDS[kind].from_payload(payload, name)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ModelError(f"{name}: incompatible amberwatch model file ({exc})") from exc


def load(path: str | os.PathLike[str] | None = None) -> Model:
    """Load a model file (None: the bundled default model); ModelError naming the path if it is unusable."""
    p = BUNDLED_PATH if path is None else Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ModelError(f"{str(p)!r}: cannot read model file ({exc.strerror or exc})") from exc
    return from_bytes(data, repr(str(p)))
