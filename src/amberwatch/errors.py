"""One exception base for amberwatch, typed subclasses, and typed warnings for non-fatal data problems.

Every error message names the offending value (file, URL, id, option). The CLI prints these
without a traceback (exit 1); the web app maps them to HTTP statuses via ``http_status``.
"""

from __future__ import annotations


class AmberwatchError(Exception):
    """Base of every error amberwatch raises on purpose."""

    http_status: int = 400


class InvalidInputError(AmberwatchError):
    """A value given by the user is malformed or out of range."""

    http_status = 422


class ImageError(InvalidInputError):
    """An image file or byte string is corrupt, empty, truncated or of an unsupported mode."""


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


class ResolutionError(ImageryError):
    """Imagery is too coarse (or otherwise unsuitable) for the model's ground resolution."""

    http_status = 422


class ModelError(AmberwatchError):
    """A model file is missing, corrupt or incompatible, or training cannot proceed."""

    http_status = 500


class DatabaseError(AmberwatchError):
    """The project database is unreadable, locked, or from a newer amberwatch."""

    http_status = 500


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


class AmberwatchWarning(UserWarning):
    """Base of non-fatal data problems; counted in reports."""


class BlankTileWarning(AmberwatchWarning):
    """A tile exists but holds no imagery (uniform fill, fully transparent)."""


class NoImageryWarning(AmberwatchWarning):
    """The source has no imagery for a tile (404 / outside coverage)."""


class SkippedFileWarning(AmberwatchWarning):
    """An input file was skipped (corrupt, not an image, unsupported)."""


class RepairedGeometryWarning(AmberwatchWarning):
    """An input geometry was invalid and has been repaired."""
