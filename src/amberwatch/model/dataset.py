"""Labelled chips as plain arrays: read from a positive/negative folder or from the example store."""

from __future__ import annotations

import hashlib
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from amberwatch.errors import ImageError, ModelError, NotAChipWarning, SkippedFileWarning
from amberwatch.imagery.decode import read_image_file
from amberwatch.labels.boxes import cut_boxes, read_boxes
from amberwatch.labels.store import ExampleStore, pixel_sha256
from amberwatch.project import Project

LABELS = ("not_mining", "mining")
TEXTY_RESOLUTION_M_PER_PX = 0.38  # ground resolution of Texty's crops and of the examples in the store
_TEXTY_NAME = re.compile(r"^(?P<lat>-?\d+(?:\.\d+)?)_(?P<lon>-?\d+(?:\.\d+)?)_(?P<date>\d{1,2}_[A-Za-z]{3}_\d{4})")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"}
# Texty's crops are 113-549 px a side; its whole images ~1,000 px. A chip classifier's single verdict on a larger
# image averages pits away: such images belong to a scan.
MAX_CHIP_SIDE_PX = 640


@dataclass
class ChipSet:
    """Chips (HxWx3 uint8, any size) with 0/1 labels, CV group keys and a display name each."""

    chips: list[np.ndarray]
    labels: np.ndarray  # (N,) int64, 1 = mining
    groups: list[str]  # 0.1-degree block (or source image) key: never split across CV folds
    names: list[str]
    fingerprint: str = ""
    extra: dict = field(default_factory=dict)
    weights: np.ndarray | None = None  # (N,) each example's weight in training a pretrained head; None: all 1

    def __len__(self) -> int:
        return len(self.chips)

    def pixel_sha256s(self) -> list[str]:
        """Every chip's pixel sha256 (its identity in the example store and the feature cache), computed once."""
        if "pixel_sha256s" not in self.extra:
            self.extra["pixel_sha256s"] = [pixel_sha256(c) for c in self.chips]
        return self.extra["pixel_sha256s"]

    def subset(self, idx: np.ndarray | list[int]) -> ChipSet:
        """The chips at positions idx."""
        idx = list(np.asarray(idx, dtype=int))
        return ChipSet(
            [self.chips[i] for i in idx],
            self.labels[idx],
            [self.groups[i] for i in idx],
            [self.names[i] for i in idx],
            weights=None if self.weights is None else self.weights[idx],
        )

    def merged(self, other: ChipSet) -> ChipSet:
        """This set followed by other (fingerprint recomputed over both)."""
        chips = self.chips + other.chips
        labels = np.concatenate([self.labels, other.labels]).astype(np.int64)
        weights = None
        if self.weights is not None or other.weights is not None:
            weights = np.concatenate([np.ones(len(s)) if s.weights is None else s.weights for s in (self, other)])
        return ChipSet(
            chips,
            labels,
            self.groups + other.groups,
            self.names + other.names,
            fingerprint=chips_fingerprint(chips, labels),
            weights=weights,
        )

    def counts(self) -> dict[str, int]:
        """Example counts by label and number of groups."""
        n_pos = int(self.labels.sum())
        return {"mining": n_pos, "not_mining": len(self) - n_pos, "groups": len(set(self.groups))}


def texty_block_key(name: str) -> str:
    """0.1-degree block key 'B{floor(lat*10)}_{floor(lon*10)}' from a Texty file name, else 'I<name>'."""
    m = _TEXTY_NAME.match(name)
    if not m:
        return f"I{name}"
    lat, lon = float(m["lat"]), float(m["lon"])
    return f"B{math.floor(lat * 10)}_{math.floor(lon * 10)}"


def chips_fingerprint(chips: list[np.ndarray], labels: np.ndarray) -> str:
    """sha256 over sorted (pixel sha256, label) pairs: identifies the training data."""
    pairs = sorted((pixel_sha256(c), LABELS[int(y)]) for c, y in zip(chips, labels))
    h = hashlib.sha256()
    for digest, label in pairs:
        h.update(f"{digest}:{label}\n".encode())
    return h.hexdigest()


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def load_folder(data_dir: str | os.PathLike[str]) -> ChipSet:
    """Read DIR/positive/* (mining) and DIR/negative/* (not mining); group by Texty 0.1-degree block.

    Unreadable images are skipped with a SkippedFileWarning naming the file.
    """
    root = Path(data_dir)
    pos_dir, neg_dir = root / "positive", root / "negative"
    if not pos_dir.is_dir() or not neg_dir.is_dir():
        raise ModelError(f"{str(root)!r}: expected sub-folders 'positive/' and 'negative/'")
    chips: list[np.ndarray] = []
    labels: list[int] = []
    groups: list[str] = []
    names: list[str] = []
    for label, folder in ((1, pos_dir), (0, neg_dir)):
        for path in _image_files(folder):
            try:
                pixels = read_image_file(path)
            except ImageError as exc:
                warnings.warn(SkippedFileWarning(f"skipped {exc}"), stacklevel=2)
                continue
            chips.append(pixels)
            labels.append(label)
            groups.append(texty_block_key(path.name))
            names.append(f"{folder.name}/{path.name}")
    if not chips:
        raise ModelError(f"{str(root)!r}: no images in positive/ or negative/")
    y = np.asarray(labels, dtype=np.int64)
    return ChipSet(chips, y, groups, names, fingerprint=chips_fingerprint(chips, y))


def load_boxes(csv_path: str | os.PathLike[str], images_dir: str | os.PathLike[str]) -> ChipSet:
    """Crops cut from whole images by a boxes CSV (amberwatch.labels.boxes); grouped by their whole image.

    Boxes that cannot be cut are skipped with a SkippedFileWarning naming the image and line.
    """

    chips: list[np.ndarray] = []
    labels: list[int] = []
    groups: list[str] = []
    names: list[str] = []
    for box, crop in cut_boxes(read_boxes(csv_path), images_dir):
        if not isinstance(crop, np.ndarray):
            warnings.warn(SkippedFileWarning(f"skipped {box.image} line {box.line}: {crop}"), stacklevel=2)
            continue
        chips.append(crop)
        labels.append(LABELS.index(box.label))
        groups.append(f"I{box.source_image}")
        names.append(box.name)
    if not chips:
        raise ModelError(f"{str(csv_path)!r}: no box could be cut from the images in {str(images_dir)!r}")
    y = np.asarray(labels, dtype=np.int64)
    return ChipSet(chips, y, groups, names, fingerprint=chips_fingerprint(chips, y))


def load_store(db: Project | str | os.PathLike[str]) -> ChipSet:
    """Read the active examples of a project's example store, grouped by Example.block_key."""
    with Project.using(db) as project:
        return _store_chips(project.store(ExampleStore), project.path)


def _store_chips(store: ExampleStore, db_path: Path) -> ChipSet:
    examples = store.examples(status="active")
    if not examples:
        raise ModelError(f"{str(db_path)!r}: the example store has no active examples")
    chips: list[np.ndarray] = []
    labels: list[int] = []
    groups: list[str] = []
    names: list[str] = []
    for ex, pixels in store.iter_pixels(examples):
        chips.append(pixels)
        labels.append(1 if ex.label == "mining" else 0)
        groups.append(ex.block_key)
        names.append(f"example {ex.id}")
    y = np.asarray(labels, dtype=np.int64)
    return ChipSet(chips, y, groups, names, fingerprint=store.fingerprint(examples))


def warn_if_not_a_chip(pixels: np.ndarray, name: str) -> None:
    """NotAChipWarning when an image is much larger than a chip (a whole image or tile given to a chip classifier)."""
    h, w = pixels.shape[:2]
    if max(h, w) > MAX_CHIP_SIDE_PX:
        warnings.warn(
            NotAChipWarning(
                f"{name}: {w} x {h} px is much larger than a chip (up to {MAX_CHIP_SIDE_PX} px a side): its one "
                "score averages small pits away; to find mining in a whole image, georeference it with "
                "'amberwatch imagery from-image' and run 'amberwatch scan' over it"
            ),
            stacklevel=2,
        )
