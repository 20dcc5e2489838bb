"""Value types shared by every imagery source: bounding boxes with units in their names and the typed image."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date

import numpy as np

from amberwatch.errors import InvalidInputError

EARTH_CIRCUMFERENCE_M = 40075016.68557849  # WGS84 equatorial, as used by Web Mercator
TILE_SIZE_PX = 256


@dataclass(frozen=True)
class LngLatBbox:
    """A bounding box in WGS84 degrees: west, south, east, north."""

    west_deg: float
    south_deg: float
    east_deg: float
    north_deg: float

    def __post_init__(self) -> None:
        vals = (self.west_deg, self.south_deg, self.east_deg, self.north_deg)
        if not all(math.isfinite(v) for v in vals):
            raise InvalidInputError(f"bounding box {vals} has non-finite values")
        if not (-180 <= self.west_deg <= 180 and -180 <= self.east_deg <= 180):
            raise InvalidInputError(f"bounding box {vals}: longitudes must be within -180..180 degrees")
        if not (-90 <= self.south_deg <= self.north_deg <= 90):
            raise InvalidInputError(f"bounding box {vals}: need -90 <= south <= north <= 90 degrees")

    @property
    def center_deg(self) -> tuple[float, float]:
        """(lon, lat) of the centre."""
        return ((self.west_deg + self.east_deg) / 2, (self.south_deg + self.north_deg) / 2)

    def as_tuple(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) in degrees."""
        return (self.west_deg, self.south_deg, self.east_deg, self.north_deg)


DATE_FORM = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")  # YYYY, YYYY-MM or YYYY-MM-DD
FULL_DATE_FORM = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_RELEASE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DATE_MARK = "@"  # joins a source id and its imagery date or release: xyz-1a2b3c4d5e6f7a8b@2018-06


def check_imagery_date(value: str | None) -> str | None:
    """An imagery date (YYYY, YYYY-MM or YYYY-MM-DD) or a release name, checked and stripped; '' or None -> None."""
    text = (value or "").strip()
    if not text:
        return None
    if re.match(r"^\d{4}([-./]|$)", text):  # meant as a date: must be one, not fall through to a release name
        if not DATE_FORM.match(text):
            raise InvalidInputError(f"imagery date {text!r} is not YYYY, YYYY-MM or YYYY-MM-DD")
        year, month, day = [*text.split("-"), "01", "01"][:3]
        try:
            date(int(year), int(month), int(day))
        except ValueError:
            raise InvalidInputError(f"imagery date {text!r} is not a real date (YYYY, YYYY-MM or YYYY-MM-DD)") from None
        return text
    if not _RELEASE.match(text):
        raise InvalidInputError(
            f"imagery date {text!r} is neither a date (YYYY, YYYY-MM, YYYY-MM-DD) nor a release name"
            " (up to 64 letters, digits, '.', '_' or '-')"
        )
    return text


def dated_source_id(base_id: str, imagery_date: str | None) -> str:
    """The source id of one imagery date or release of a source; undated, the source's own id unchanged."""
    return base_id if imagery_date is None else f"{base_id}{DATE_MARK}{imagery_date}"


@dataclass(frozen=True)
class ImageryRef:
    """Which imagery to read: the spec (URL template, preset, path), options for opening it, and its date or release.

    The date is part of the source id (``dated_source_id``), so of the tile cache key and of the scan identity;
    None means undated: the source id, cache entries and scans of a source as they always were. Options (API key
    variable, retries, the capture-date fill-in) change how tiles are fetched, not which imagery they are.
    """

    spec: str
    options: tuple[tuple[str, object], ...] = ()
    imagery_date: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "imagery_date", check_imagery_date(self.imagery_date))
        object.__setattr__(self, "options", tuple(sorted(self.options)))


def ground_resolution_m_per_px(lat_deg: float, zoom: int, tile_size_px: int = TILE_SIZE_PX) -> float:
    """True ground size of one Web Mercator pixel at a latitude and zoom, in metres."""
    return EARTH_CIRCUMFERENCE_M * math.cos(math.radians(lat_deg)) / (tile_size_px * 2**zoom)


@dataclass
class GeoImage:
    """An RGB image with its footprint: what every imagery reader returns.

    ``pixels`` is always HxWx3 uint8 RGB (readers convert or refuse other modes). ``valid`` is HxW bool, True
    where the source has imagery (from alpha, nodata values, dataset masks or mosaic gaps; no-data pixels are
    black), or None when every pixel has imagery.
    """

    pixels: np.ndarray
    bbox: LngLatBbox
    resolution_m_per_px: float
    source_id: str
    capture_date: date | None = None
    tile: tuple[int, int, int] | None = None  # (x, y, z) when the image is a web-map tile
    warnings: list[str] = field(default_factory=list)
    valid: np.ndarray | None = None

    def __post_init__(self) -> None:
        a = self.pixels
        if not (isinstance(a, np.ndarray) and a.ndim == 3 and a.shape[2] == 3 and a.dtype == np.uint8):
            raise InvalidInputError(
                f"GeoImage pixels must be HxWx3 uint8, got {getattr(a, 'shape', None)} {getattr(a, 'dtype', None)}"
            )
        v = self.valid
        if v is not None and not (isinstance(v, np.ndarray) and v.dtype == bool and v.shape == a.shape[:2]):
            raise InvalidInputError(
                f"GeoImage valid mask must be {a.shape[0]}x{a.shape[1]} bool, got "
                f"{getattr(v, 'shape', None)} {getattr(v, 'dtype', None)}"
            )

    @property
    def valid_fraction(self) -> float:
        """Share of the pixels that have imagery (1.0 without a mask)."""
        return 1.0 if self.valid is None else float(self.valid.mean())

    @property
    def height_px(self) -> int:
        """Image height in pixels."""
        return int(self.pixels.shape[0])

    @property
    def width_px(self) -> int:
        """Image width in pixels."""
        return int(self.pixels.shape[1])
