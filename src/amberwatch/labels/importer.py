"""Import and export folders of labelled crops (``positive/`` / ``negative/``) to and from the example store."""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import numpy as np

from amberwatch.errors import AmberwatchError, ImageError, InvalidInputError, NotFoundError, SkippedFileWarning
from amberwatch.imagery.decode import decode_image
from amberwatch.labels.store import CATEGORIES, Example, ExampleStore, check_label

# Folder name -> label; searched directly under the imported folder.
LABEL_FOLDERS = {"positive": "mining", "mining": "mining", "negative": "not_mining", "not_mining": "not_mining"}
EXPORT_FOLDERS = {"mining": "positive", "not_mining": "negative"}
BATCH_SIZE = 200
MIN_EXAMPLE_PX = 16  # smaller crops hold no usable context for the model (a 1x1 "example" is noise)
MAX_EXAMPLE_PIXELS = 4096 * 4096  # an example is a crop; bigger files are refused before decoding

_TEXTY_NAME = re.compile(
    r"^(?P<lat>-?\d+(?:\.\d+)?)_(?P<lon>-?\d+(?:\.\d+)?)_(?P<day>\d{1,2})_(?P<mon>[A-Za-z]{3})_(?P<year>\d{4})"
    r"_GMT_super_(?P<n>\d+)\.png$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class TextyName:
    """Metadata parsed from a Texty crop name ``LAT_LON_DD_Mon_YYYY_GMT_super_N.png``."""

    lat: float
    lon: float
    imagery_date: str
    source_image: str
    superpixel: int


def parse_texty_name(name: str) -> TextyName | None:
    """Parse a Texty crop file name; None when the name does not follow that pattern or is out of range."""
    m = _TEXTY_NAME.match(name)
    if not m:
        return None
    lat, lon = float(m["lat"]), float(m["lon"])
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        return None
    try:
        day = datetime.strptime(f"{m['day']} {m['mon'].title()} {m['year']}", "%d %b %Y").date()
    except ValueError:
        return None
    return TextyName(lat, lon, day.isoformat(), f"{m['lat']}_{m['lon']}", int(m["n"]))


def texty_name(source_image: str, imagery_date: str, n: int) -> str:
    """Build a Texty-style crop name from the 'LAT_LON' key, an ISO date and a superpixel index."""
    d = date.fromisoformat(imagery_date)
    return f"{source_image}_{d.strftime('%d')}_{d.strftime('%b')}_{d.year}_GMT_super_{n}.png"


@dataclass
class ImportReport:
    """Outcome of one folder import: counts plus the skipped files with reasons."""

    added: int = 0
    present: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    by_label: dict[str, int] = field(default_factory=lambda: {"mining": 0, "not_mining": 0})

    def count(self, label: str, created: bool) -> None:
        """Count one example seen: newly added or already present."""
        self.by_label[label] += 1
        if created:
            self.added += 1
        else:
            self.present += 1

    def summary_lines(self) -> list[str]:
        """Human-readable summary: one line of counts, then one line per skipped file."""
        lines = [
            f"added {self.added}, already present {self.present}, skipped {len(self.skipped)}"
            f" (mining {self.by_label['mining']}, not_mining {self.by_label['not_mining']} seen)"
        ]
        lines += [f"skipped {path}: {reason}" for path, reason in self.skipped]
        return lines


@dataclass(frozen=True)
class _Candidate:
    path: Path
    label: str
    category: str | None


def find_label_folders(root: str | os.PathLike[str]) -> list[tuple[Path, str]]:
    """The (folder, label) pairs directly under root; InvalidInputError naming root when there are none."""
    base = Path(root)
    if not base.is_dir():
        raise NotFoundError(f"folder {str(base)!r} does not exist or is not a folder")
    found = [(base / name, label) for name, label in LABEL_FOLDERS.items() if (base / name).is_dir()]
    if not found:
        raise InvalidInputError(
            f"folder {str(base)!r} holds none of the label folders {', '.join(f + '/' for f in LABEL_FOLDERS)}"
        )
    return found


def _candidates(root: Path) -> list[_Candidate]:
    out = []
    for folder, label in find_label_folders(root):
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder)
            if any(part.startswith(".") for part in rel.parts) or not path.is_file():
                continue
            category = None
            if len(rel.parts) > 1 and rel.parts[0].lower() in CATEGORIES:
                category = rel.parts[0].lower()
            out.append(_Candidate(path, label, category))
    return out


def import_folder(
    store: ExampleStore,
    root: str | os.PathLike[str],
    *,
    source: str = "import",
    added_by: str = "cli",
    batch_size: int = BATCH_SIZE,
) -> ImportReport:
    """Import every file under root's label folders; skip unreadable files with a SkippedFileWarning.

    Idempotent: files whose pixels are already stored count as present. A sub-folder named after a
    known category (``negative/quarry/x.png``) sets the category. One transaction per batch.
    """
    if not source:
        raise InvalidInputError("import source must not be empty")
    report = ImportReport()
    candidates = _candidates(Path(root))
    for start in range(0, len(candidates), batch_size):
        batch = []
        for cand in candidates[start : start + batch_size]:
            try:
                data = cand.path.read_bytes()
                pixels = decode_example(data, str(cand.path))
            except OSError as exc:
                _skip(report, cand.path, f"cannot read file ({exc.strerror or exc})")
                continue
            except AmberwatchError as exc:
                _skip(report, cand.path, _reason(exc, cand.path))
                continue
            batch.append((cand, data, pixels))
        with store.transaction():
            for cand, data, pixels in batch:
                meta = parse_texty_name(cand.path.name)
                try:
                    _, created = store.add(
                        pixels,
                        cand.label,
                        category=cand.category,
                        lon=meta.lon if meta else None,
                        lat=meta.lat if meta else None,
                        imagery_date=meta.imagery_date if meta else None,
                        source=source,
                        source_image=meta.source_image if meta else None,
                        added_by=added_by,
                        name=cand.path.name,
                        encoded=data,
                    )
                except AmberwatchError as exc:
                    _skip(report, cand.path, _reason(exc, cand.path))
                    continue
                report.count(cand.label, created)
    return report


def decode_example(data: bytes, name: str) -> np.ndarray:
    """Decode an example image, refusing images above MAX_EXAMPLE_PIXELS or below MIN_EXAMPLE_PX a side."""
    pixels = decode_image(data, name, max_pixels=MAX_EXAMPLE_PIXELS)
    h, w = pixels.shape[:2]
    if min(h, w) < MIN_EXAMPLE_PX:
        raise ImageError(
            f"{name}: image of {w}x{h} px is below the minimum of {MIN_EXAMPLE_PX}x{MIN_EXAMPLE_PX} px for an example"
        )
    return pixels


def _reason(exc: Exception, path: Path) -> str:
    msg = str(exc)
    prefix = f"{path}: "
    return msg[len(prefix) :] if msg.startswith(prefix) else msg


def _skip(report: ImportReport, path: Path, reason: str) -> None:
    report.skipped.append((str(path), reason))
    warnings.warn(SkippedFileWarning(f"skipped {path}: {reason}"), stacklevel=3)


def export_name(store: ExampleStore, ex: Example) -> str:
    """File name for an exported example.

    Texty-style when located and dated, else the imported name or ``example_<id>.png``.
    """
    original = store.original_name(ex.id)
    if original and parse_texty_name(original):
        return original
    if ex.located and ex.imagery_date:
        key = ex.source_image if ex.source_image and _source_key_ok(ex.source_image) else f"{ex.lat}_{ex.lon}"
        return texty_name(key, ex.imagery_date, ex.id)
    if original and Path(original).stem and not Path(original).stem.startswith("."):
        return f"{Path(original).stem}.png"
    return f"example_{ex.id}.png"


def _source_key_ok(key: str) -> bool:
    return re.fullmatch(r"-?\d+(?:\.\d+)?_-?\d+(?:\.\d+)?", key) is not None


def export_folder(
    store: ExampleStore,
    root: str | os.PathLike[str],
    *,
    label: str | None = None,
    by_category: bool = False,
) -> dict[str, int]:
    """Write active examples as PNG files under root/positive and root/negative; return counts per label.

    With ``by_category`` negatives with a category go to ``negative/<category>/`` (re-importable).
    Existing files of the same name are overwritten; two examples never share a name.
    """
    if label is not None:
        check_label(label)
    base = Path(root)
    counts = {"mining": 0, "not_mining": 0}
    used: set[Path] = set()
    for ex in store.examples(status="active", label=label):
        folder = base / EXPORT_FOLDERS[ex.label]
        if by_category and ex.category:
            folder = folder / ex.category
        name = export_name(store, ex)
        path = folder / name
        if path in used:
            path = folder / f"{Path(name).stem}_{ex.id}.png"
        used.add(path)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_bytes(store.png(ex.id))
        except OSError as exc:
            raise InvalidInputError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from exc
        counts[ex.label] += 1
    return counts
