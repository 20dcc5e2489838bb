"""Work the map server does in the background after it starts: load the gazetteer (place names) and build the
overview tiles of every scan's imagery, so the first reader to zoom out does not wait for them."""

from __future__ import annotations

import logging
import os
import threading

from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.overview import build_overviews
from amberwatch.project import Project
from amberwatch.results.places import describe_place
from amberwatch.results.store import scan_layers
from amberwatch.web.layers import aoi_bounds, overview_zoom

log = logging.getLogger(__name__)


def scan_pyramids(db: Project | str | os.PathLike[str]) -> list[tuple[str, int, int]]:
    """(imagery source id, scan zoom, lowest overview zoom) of every scan, each pyramid once."""
    with Project.using(db, create=False) as project:
        conn = project.connection()  # its own: this runs in the warm-up thread
    try:
        out: dict[tuple[str, int], int] = {}
        for layer in scan_layers(conn):
            scan = layer.scan
            key = (scan.imagery_source_id, scan.zoom)
            min_z = overview_zoom(key[1], aoi_bounds(scan.aoi_geojson))
            out[key] = min(out.get(key, key[1]), min_z if min_z is not None else key[1])
    finally:
        conn.close()
    return [(src, z, min_z) for (src, z), min_z in out.items()]


def _run(project: Project, cache: TileCache, overviews: bool, stop: threading.Event) -> None:
    try:
        describe_place(0.0, 0.0)  # loads the gazetteer once per process
        if overviews:
            for source_id, zoom, min_z in scan_pyramids(project):
                if stop.is_set():
                    return
                build_overviews(cache, source_id, zoom, min_z, stop=stop.is_set)
    except Exception:  # the map works without this; tiles are then built when first asked for
        if not stop.is_set():
            log.exception("background warm-up of the map failed")


class Warmup:
    """The background warm-up thread; ``close`` stops it between two tiles and waits for it."""

    def __init__(self, project: Project, cache: TileCache, *, overviews: bool) -> None:
        """Start the warm-up in a daemon thread."""
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=_run, args=(project, cache, overviews, self.stop), name="map-warmup", daemon=True
        )
        self.thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Ask the thread to stop and wait for it (before the cache it uses is closed)."""
        self.stop.set()
        self.thread.join(timeout)
