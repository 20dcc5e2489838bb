"""Labelled boxes drawn on whole images (a CSV of pixel rectangles) cut into example crops.

This is how whole source images (e.g. the Texty ``tiles/``) grow the example set: a person marks
rectangles as mining / not_mining once, the CSV is kept in version control, and the crops are cut
again on any machine. CSV columns: ``image,x0_px,y0_px,x1_px,y1_px,label[,category]``; ``image`` is
a path relative to the images folder given at import time.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amberwatch.errors import AmberwatchError, InvalidInputError, NotFoundError
from amberwatch.imagery.decode import read_image_file
from amberwatch.labels.importer import ImportReport
from amberwatch.labels.store import ExampleStore, check_category, check_label

REQUIRED_COLUMNS = ("image", "x0_px", "y0_px", "x1_px", "y1_px", "label")
MIN_SIDE_PX = 16


@dataclass(frozen=True)
class LabelledBox:
    """One rectangle [x0, x1) x [y0, y1) in pixels of a whole image, with its label."""

    image: str
    x0_px: int
    y0_px: int
    x1_px: int
    y1_px: int
    label: str
    category: str | None = None
    line: int = 0  # CSV line number, for messages

    @property
    def name(self) -> str:
        """Crop name ``<image stem>_x<x0>_y<y0>_<w>x<h>.png``."""
        stem = Path(self.image).stem
        return f"{stem}_x{self.x0_px}_y{self.y0_px}_{self.x1_px - self.x0_px}x{self.y1_px - self.y0_px}.png"

    @property
    def source_image(self) -> str:
        """Key of the whole image the crop comes from: crops of one image stay in one CV group."""
        return f"box:{Path(self.image).name}"


def read_boxes(csv_path: str | os.PathLike[str]) -> list[LabelledBox]:
    """Parse a boxes CSV; InvalidInputError naming the file and line for any malformed row."""
    path = Path(csv_path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise NotFoundError(f"boxes file {str(path)!r}: cannot read ({exc.strerror or exc})") from exc
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise InvalidInputError(f"boxes file {str(path)!r}: missing column(s) {', '.join(missing)}")
    boxes = []
    for row in reader:
        where = f"boxes file {str(path)!r} line {reader.line_num}"
        try:
            x0, y0, x1, y1 = (int(row[c]) for c in ("x0_px", "y0_px", "x1_px", "y1_px"))
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"{where}: pixel coordinates must be integers ({exc})") from exc
        if min(x0, y0) < 0 or x1 - x0 < MIN_SIDE_PX or y1 - y0 < MIN_SIDE_PX:
            raise InvalidInputError(
                f"{where}: box ({x0}, {y0}, {x1}, {y1}) must have x0, y0 >= 0 and sides >= {MIN_SIDE_PX} px"
            )
        try:
            label = check_label((row["label"] or "").strip())
            category = check_category((row.get("category") or "").strip() or None)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{where}: {exc}") from exc
        boxes.append(LabelledBox((row["image"] or "").strip(), x0, y0, x1, y1, label, category, reader.line_num))
    return boxes


def cut_box(pixels: np.ndarray, box: LabelledBox) -> np.ndarray:
    """The box's crop of the whole image's pixels; InvalidInputError when the box leaves the image."""
    h, w = pixels.shape[:2]
    if box.x1_px > w or box.y1_px > h:
        raise InvalidInputError(
            f"box on line {box.line} ({box.x0_px}, {box.y0_px}, {box.x1_px}, {box.y1_px}) "
            f"lies outside {box.image!r} ({w}x{h} px)"
        )
    return np.ascontiguousarray(pixels[box.y0_px : box.y1_px, box.x0_px : box.x1_px])


def cut_boxes(
    boxes: list[LabelledBox], images_dir: str | os.PathLike[str]
) -> Iterator[tuple[LabelledBox, np.ndarray | AmberwatchError]]:
    """Yield (box, HxWx3 uint8 crop) or (box, the error naming its image or box); each image is read once."""
    root = Path(images_dir)
    by_image: dict[str, list[LabelledBox]] = {}
    for box in boxes:
        by_image.setdefault(box.image, []).append(box)
    for image, group in by_image.items():
        try:
            pixels = read_image_file(root / image)
        except AmberwatchError as exc:
            for box in group:
                yield box, exc
            continue
        for box in group:
            try:
                yield box, cut_box(pixels, box)
            except AmberwatchError as exc:
                yield box, exc


def import_boxes(
    store: ExampleStore,
    csv_path: str | os.PathLike[str],
    images_dir: str | os.PathLike[str],
    *,
    source: str = "boxes",
    added_by: str = "cli",
) -> ImportReport:
    """Cut every box of the CSV and add it to the store (idempotent); boxes that fail are reported and skipped."""
    report = ImportReport()
    with store.transaction():
        for box, crop in cut_boxes(read_boxes(csv_path), images_dir):
            try:
                if isinstance(crop, AmberwatchError):
                    raise crop
                _, created = store.add(
                    crop,
                    box.label,
                    category=box.category,
                    source=source,
                    source_image=box.source_image,
                    added_by=added_by,
                    name=box.name,
                )
            except AmberwatchError as exc:
                report.skipped.append((f"{box.image} line {box.line}", str(exc)))
                continue
            report.count(box.label, created)
    return report
