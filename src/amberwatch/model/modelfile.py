"""Reading model files of either recipe: the CNN ensemble (format 1 and 2) and the pretrained head (format 2)."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import warnings
import zipfile
from pathlib import Path

import torch

from amberwatch.errors import InvalidInputError, ModelError, UnverifiedModelWarning
from amberwatch.model.classifier import DIGEST_KEY, FORMAT, FORMAT_VERSION, Classifier, content_sha256
from amberwatch.model.limits import MODEL_LIMITS, check_limits
from amberwatch.model.pretrained import PretrainedClassifier

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
BUNDLED_PATH = BUNDLED_DIR / "default.pt"  # recipe pretrained, version 2
BUNDLED_TRIAGE_PATH = BUNDLED_DIR / "triage.pt"  # the z17 triage model: the recipe at half resolution, recall first
BUNDLED_CNN_PATH = BUNDLED_DIR / "cnn-v1.pt"  # the CNN recipe's model v1, kept to compare recipes
Model = Classifier | PretrainedClassifier
_KINDS = {"cnn": Classifier, "pretrained": PretrainedClassifier}


def from_bytes(data: bytes, name: str = "<bytes>", *, file_checked: bool = False) -> Model:
    """A model from the bytes of a model file; ModelError naming `name` on anything unreadable or incompatible.

    Bytes without a content digest (files from before it) that no file sha256 vouches for (``file_checked``) load
    with an UnverifiedModelWarning.
    """
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
    if not check_digest(payload, name) and not file_checked:
        warnings.warn(
            UnverifiedModelWarning(
                f"{name}: the model file carries no content digest (it predates them), so damage to it cannot be "
                "detected; 'amberwatch models add' registers it with its sha256"
            ),
            stacklevel=3,
        )
    kind = payload.get("kind", "cnn")
    if kind not in _KINDS:
        raise ModelError(f"{name}: unknown model kind {kind!r} (expected one of {sorted(_KINDS)})")
    try:
        model = _KINDS[kind].from_payload(payload, name)
        check_limits("model", vars(model), MODEL_LIMITS)
    except (KeyError, TypeError, ValueError, RuntimeError, InvalidInputError) as exc:
        raise ModelError(f"{name}: incompatible amberwatch model file ({exc})") from exc
    return model


def check_digest(payload: dict, name: str) -> bool:
    """ModelError naming the file and both digests when a payload's content differs from the digest it carries ->
    whether it carries one (files from before the digest carry none: a registered one is checked by the registry's
    file sha256)."""
    stored = payload.get(DIGEST_KEY)
    if stored is None:
        return False
    actual = content_sha256(payload)
    if actual != stored:
        raise ModelError(f"{name}: damaged model file: its content has sha256 {actual}, but the file records {stored}")
    return True


def load(
    path: str | os.PathLike[str] | None = None, file_sha256: str | None = None, *, recorded_by: str = "the registry"
) -> Model:
    """Load a model file (None: the bundled default model), checking its content digest and, if given, the file's
    sha256 (a registry's record of it, or ``recorded_by``'s); ModelError naming the path if it is unusable or not
    what it claims.

    The model's ``file_sha256`` is the sha256 of the bytes loaded: scan workers load the file again checked against it.
    """
    p = BUNDLED_PATH if path is None else Path(path)
    if p.exists() and not p.is_file():  # a FIFO would block the read, a folder fail it
        raise ModelError(f"{str(p)!r}: not a regular file, cannot be a model file")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ModelError(f"{str(p)!r}: cannot read model file ({exc.strerror or exc})") from exc
    actual = hashlib.sha256(data).hexdigest()
    if file_sha256 is not None and actual != file_sha256:
        raise ModelError(
            f"{str(p)!r}: damaged or replaced model file: its sha256 is {actual}, "
            f"but {recorded_by} records {file_sha256}"
        )
    model = from_bytes(data, repr(str(p)), file_checked=file_sha256 is not None)
    model.file_sha256 = actual
    return model
