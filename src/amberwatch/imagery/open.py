"""The one way to open imagery: an imagery spec -> TileSource.

The spec is a URL template, a preset, ``wayback:<release date or number>``, a GeoTIFF/COG, a tile folder or an
MBTiles file.
"""

from __future__ import annotations

import os
from pathlib import Path

from amberwatch.errors import InvalidInputError
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.folder import FolderTileSource
from amberwatch.imagery.geotiff import GeoTiffTileSource
from amberwatch.imagery.mbtiles import MBTilesTileSource
from amberwatch.imagery.sources import TileSource
from amberwatch.imagery.types import ImageryRef
from amberwatch.imagery.wayback import SPEC_PREFIX, open_wayback
from amberwatch.imagery.xyz import DEFAULT_DEADLINE_S, HttpOptions, XyzTileSource, preset_source


def open_source(
    spec: str,
    *,
    cache: TileCache | None = None,
    headers: dict[str, str] | None = None,
    api_key_env: str | None = None,
    capture_date: str | None = None,
    imagery_date: str | None = None,
    max_concurrency: int = 8,
    requests_per_s: float = 50.0,
    timeout_s: float = 20.0,
    max_retries: int = 4,
    deadline_s: float = DEFAULT_DEADLINE_S,
) -> TileSource:
    """Open an imagery spec: URL template, xyzservices preset, wayback:DATE|NUMBER, GeoTIFF/COG, tile folder or
    .mbtiles file.

    ``imagery_date`` (a date or release) dates the source: its tiles are cached and scanned apart from the same
    spec's at other dates (see ImageryRef). The rest are ``HttpOptions``, used by URL templates and presets."""
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidInputError(f"imagery spec {spec!r} is empty")
    spec = spec.strip()

    def http() -> HttpOptions:  # built only for HTTP sources: local files ignore (and never checked) these
        return HttpOptions(headers, api_key_env, max_concurrency, requests_per_s, timeout_s, max_retries, deadline_s)

    local = dict(cache=cache, capture_date=capture_date, imagery_date=imagery_date)
    lowered = spec.lower()
    if lowered == "wayback" or lowered.startswith(SPEC_PREFIX):
        return open_wayback(spec[len(SPEC_PREFIX) :], http=http(), **local)  # type: ignore[arg-type]
    if lowered.startswith(("http://", "https://")):
        return XyzTileSource(spec, http=http(), **local)  # type: ignore[arg-type]
    path = Path(os.path.expanduser(spec))
    if lowered.endswith((".tif", ".tiff")):
        return GeoTiffTileSource(path, **local)
    if lowered.endswith(".mbtiles"):
        return MBTilesTileSource(path, **local)
    if path.is_dir():
        return FolderTileSource(path, **local)
    if "/" not in spec and "\\" not in spec and not path.exists():
        found = preset_source(spec, http=http(), **local)
        if found is not None:
            return found
    raise InvalidInputError(
        f"imagery spec {spec!r} is not a URL template, an xyzservices preset, wayback:DATE|NUMBER, a .tif/.tiff file,"
        " a tile folder or an .mbtiles file"
    )


def open_ref(ref: ImageryRef, *, cache: TileCache | None = None) -> TileSource:
    """Open the imagery an ImageryRef names, at its date or release."""
    return open_source(ref.spec, cache=cache, imagery_date=ref.imagery_date, **dict(ref.options))  # type: ignore[arg-type]
