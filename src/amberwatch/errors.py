"""One exception base for amberwatch, typed subclasses, and typed warnings for non-fatal data problems.

Every error message names the offending value (file, URL, id, option). The CLI prints these
without a traceback (exit 1); the web app maps them to HTTP statuses via ``http_status``.
"""

from __future__ import annotations


class AmberwatchError(Exception):
    """Base of every error amberwatch raises on purpose."""

    http_status: int = 400
    retry_after_s: int | None = None  # when set, the web answer carries a Retry-After header (seconds)


class InvalidInputError(AmberwatchError):
    """A value given by the user is malformed or out of range."""

    http_status = 422


class ImageError(InvalidInputError):
    """An image file or byte string is corrupt, empty, truncated or of an unsupported mode."""


class ImageTooLargeError(ImageError):
    """An image is larger than its pixel limit (a possible decompression bomb); refused before decoding."""


class AOIError(InvalidInputError):
    """An area of interest is malformed, empty, in the wrong CRS or too large."""


class CRSError(InvalidInputError):
    """A coordinate reference system is missing or unsupported."""


class NotFoundError(AmberwatchError):
    """A requested record (example, scan, detection, model version, file) does not exist."""

    http_status = 404


class ImageryError(AmberwatchError):
    """An imagery source cannot be opened or read (dead server, unreadable raster)."""

    http_status = 502


class TileTooLargeError(ImageryError):
    """A tile's image or HTTP body is far larger than a tile (a possible decompression bomb): failed, never retried."""


class UnreachableError(ImageryError):
    """The imagery server cannot be resolved or connected to (offline, wrong host, server down)."""


class ResolutionError(ImageryError):
    """Imagery is too coarse (or otherwise unsuitable) for the model's ground resolution."""

    http_status = 422


class ModelError(AmberwatchError):
    """A model file is missing, corrupt or incompatible, or training cannot proceed."""

    http_status = 500


class DatabaseError(AmberwatchError):
    """The project database is unreadable, locked, or from a newer amberwatch."""

    http_status = 500


class DatabaseBusyError(DatabaseError):
    """The project database stayed write-locked by another process for longer than the caller waits: try again."""

    http_status = 503
    retry_after_s = 5


class StorageFullError(AmberwatchError):
    """A file (the project DB, a cache, an output) could not be written: the disk or the database is full."""

    http_status = 507


class AuthError(AmberwatchError):
    """Missing or invalid credentials."""

    http_status = 401


class PermissionDeniedError(AmberwatchError):
    """Valid credentials without the needed role."""

    http_status = 403


class RateLimitError(AmberwatchError):
    """Too many requests from one client."""

    http_status = 429


class PayloadTooLargeError(AmberwatchError):
    """A request body or field exceeds its size limit."""

    http_status = 413


class ConflictError(AmberwatchError):
    """The request conflicts with the current state (e.g. promoting a worse model without force)."""

    http_status = 409


class ScanRunningError(ConflictError):
    """The same scan (AOI, imagery, zoom, model) is already running in another process."""


class OfflineError(UnreachableError):
    """The first tile requests of a scan all failed to connect: the scan stopped early and stays resumable."""


class AmberwatchWarning(UserWarning):
    """Base of non-fatal data problems; counted in reports."""


class ModelFallbackWarning(AmberwatchWarning):
    """A model's fast path (e.g. its int8 backbone) could not be built here; the exact fp32 path is used."""


class Int8CheckWarning(ModelFallbackWarning):
    """The model's int8 backbone failed its check against fp32 on this CPU (or cannot be checked): fp32 is used."""


class UnverifiedModelWarning(AmberwatchWarning):
    """A model file given by path carries no content digest (written before they had one): damage cannot be seen."""


class BlankTileWarning(AmberwatchWarning):
    """A tile exists but holds no imagery (uniform fill, fully transparent)."""


class NoImageryWarning(AmberwatchWarning):
    """The source has no imagery for a tile (404 / outside coverage)."""


class SkippedFileWarning(AmberwatchWarning):
    """An input file was skipped (corrupt, not an image, unsupported)."""


class RepairedGeometryWarning(AmberwatchWarning):
    """An input geometry was invalid and has been repaired."""


class AntimeridianWarning(AmberwatchWarning):
    """An input polygon crossed the antimeridian unsplit and has been cut in two at 180° (RFC 7946)."""


class OversizedTileWarning(AmberwatchWarning):
    """A tile's image was larger than the tile size limit (a possible decompression bomb) and was refused."""


class ResampledTileWarning(AmberwatchWarning):
    """A tile was not 256 x 256 px and has been resampled to fit."""


class OutsideImageryWarning(AmberwatchWarning):
    """Part of an AOI lies outside the bounds of the local imagery source it is scanned over."""


class NotAChipWarning(AmberwatchWarning):
    """An image given to a chip classifier is much larger than a chip (a whole image or tile)."""


class TrainedOnWarning(AmberwatchWarning):
    """Examples scored to evaluate a model include examples it was trained on: those scores are optimistic."""


class NoOutlinesWarning(AmberwatchWarning):
    """The offline country outlines (pyogrio's Natural Earth file) are missing: no locator is drawn."""
