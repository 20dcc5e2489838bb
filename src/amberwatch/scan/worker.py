"""The unit of scan work: fetch a block of tiles with a ring of neighbours, classify it in one pass, return grids.

``process_unit(unit, context)`` is pure and picklable so any runner (local process pool, Dask) can call
it. It never writes the project DB; it only reads/writes the shared tile cache through the imagery
source. The model and the source are opened once per worker process and kept in module globals.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from amberwatch.errors import AmberwatchWarning, ImageryError, UnreachableError
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.open import open_source
from amberwatch.imagery.types import TILE_SIZE_PX, GeoImage
from amberwatch.model.modelfile import load
from amberwatch.results.store import TileRow
from amberwatch.scan.tiling import Unit

_MODELS: dict[tuple[str, str], object] = {}
_SOURCES: dict[tuple, object] = {}
_CACHES: dict[str, object] = {}
MIN_VALID_SHARE = 0.5  # a cell counts as scanned ground when at least this share of its pixels has imagery


@dataclass(frozen=True)
class ScanContext:
    """Everything a worker needs to process units, as plain picklable values."""

    imagery: str  # imagery spec as given to open_source
    cache_path: str  # shared tile cache file
    model_path: str | None  # None = bundled model
    model_version: str
    zoom: int
    tile_px: int  # side of one tile after resampling to the model's resolution (multiple of cell_px)
    margin_px: int  # context margin around the block, in model pixels (multiple of cell_px)
    cell_px: int
    source_options: tuple[tuple[str, object], ...] = ()  # extra open_source keyword arguments
    torch_threads: int | None = 1
    block_tiles: int = 4  # tiles per side of one predict_grid call (plus margin)
    int8: bool = False  # score maps through the model's int8 backbone

    @property
    def cells_per_tile(self) -> int:
        """Probability cells per tile side."""
        return self.tile_px // self.cell_px


@dataclass
class UnitResult:
    """The per-tile results of one unit plus timings."""

    unit: Unit
    tiles: list[TileRow] = field(default_factory=list)
    fetch_s: float = 0.0
    predict_s: float = 0.0
    cpu_s: float = 0.0  # CPU time of this process spent on the unit (fetch + decode + classify)
    warnings: dict[str, int] = field(default_factory=dict)  # amberwatch warning class name -> count
    reads_ok: int = 0  # tile reads (the unit's tiles and their neighbours) that gave an image or "no imagery"
    reads_unreachable: int = 0  # tile reads that failed to resolve or connect to the server
    reads_failed: int = 0  # tile reads that failed otherwise (HTTP errors, timeouts, bad images)


def get_model(path: str | None, version: str, int8: bool = False):
    """The classifier for (path, version), loaded once per process (int8: its quantized backbone for maps)."""
    key = (path or "<bundled>", version, int8)
    model = _MODELS.get(key)
    if model is None:
        model = load(path)
        model.version = version
        if int8:
            model.set_int8(True)
        _MODELS.clear()  # one model per worker process is enough
        _MODELS[key] = model
    return model


def remember_model(path: str | None, version: str, model: object, int8: bool = False) -> None:
    """Seed the per-process model cache with an already loaded classifier (in-process runs)."""
    _MODELS.clear()
    if int8:
        model.set_int8(True)
    _MODELS[(path or "<bundled>", version, int8)] = model


def remember_source(context: ScanContext, cache: object, source: object) -> None:
    """Seed the per-process source cache: ``process_unit`` for this context will read ``source`` only."""
    _CACHES[context.cache_path] = cache
    _SOURCES[_source_key(context)] = source


def _source_key(context: ScanContext) -> tuple:
    return (context.imagery, context.cache_path, context.source_options)


def release() -> None:
    """Close the sources and caches this process opened (end of an in-process run)."""
    for source in _SOURCES.values():
        source.close()
    for cache in _CACHES.values():
        cache.close()
    _SOURCES.clear()
    _CACHES.clear()


def get_source(context: ScanContext):
    """The imagery source for the context, opened once per process on the shared cache."""
    key = _source_key(context)
    source = _SOURCES.get(key)
    if source is None:
        cache = _CACHES.get(context.cache_path)
        if cache is None:
            cache = _CACHES[context.cache_path] = TileCache(context.cache_path)
        source = open_source(context.imagery, cache=cache, **dict(context.source_options))
        _SOURCES[key] = source
    return source


def init_worker(torch_threads: int | None = 1, parent_pid: int | None = None) -> None:
    """Process-pool initializer: one torch thread per worker, and exit when the scanning process is gone.

    A pool worker whose parent was killed with SIGKILL would otherwise wait for work forever.
    """
    if torch_threads:
        import torch

        torch.set_num_threads(torch_threads)
    if parent_pid:
        threading.Thread(target=_exit_when_gone, args=(parent_pid,), daemon=True, name="parent-watch").start()


def _exit_when_gone(pid: int, every_s: float = 1.0) -> None:
    while True:
        time.sleep(every_s)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:
            pass


def neighbours(x: int, y: int, zoom: int, ring: int = 1) -> list[tuple[int, int]]:
    """The tile and its neighbours up to ``ring`` tiles away that exist at ``zoom`` (no antimeridian wrap)."""
    n = 1 << zoom
    steps = range(-ring, ring + 1)
    return [(x + dx, y + dy) for dy in steps for dx in steps if 0 <= x + dx < n and 0 <= y + dy < n]


def process_unit(unit: Unit, context: ScanContext, todo: tuple[tuple[int, int], ...] | None = None) -> UnitResult:
    """Fetch, classify and grid the tiles ``todo`` (default: all) of a unit; never touches the project DB."""
    todo = unit.tiles if todo is None else todo
    result = UnitResult(unit=unit)
    if not todo:
        return result
    cpu_started = time.process_time()
    ring = max(1, -(-context.margin_px // context.tile_px))  # tiles of context around each tile (1 unless tiny)
    started = time.perf_counter()
    images = _read_tiles(context, sorted({nb for x, y in todo for nb in neighbours(x, y, context.zoom, ring)}), result)
    result.fetch_s = time.perf_counter() - started
    to_predict = _triage(todo, images, context.zoom, ring, result)
    if to_predict:
        started = time.perf_counter()
        _classify(unit, context, images, to_predict, ring, result)
        result.predict_s = time.perf_counter() - started
    result.cpu_s = time.process_time() - cpu_started
    return result


def _read_tiles(
    context: ScanContext, needed: list[tuple[int, int]], result: UnitResult
) -> dict[tuple[int, int], object]:
    """Read the tiles (x, y) at the context's zoom; typed warnings are counted on the result, not printed."""
    images: dict[tuple[int, int], object] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for (_tz, tx, ty), image in get_source(context).read_tiles((context.zoom, x, y) for x, y in needed):
            images[(tx, ty)] = image
            if isinstance(image, UnreachableError):
                result.reads_unreachable += 1
            elif isinstance(image, ImageryError):
                result.reads_failed += 1
            else:
                result.reads_ok += 1
    for w in caught:
        if issubclass(w.category, AmberwatchWarning):
            name = w.category.__name__
            result.warnings[name] = result.warnings.get(name, 0) + 1
    return images


def _triage(todo, images: dict, z: int, ring: int, result: UnitResult) -> list[tuple[int, int]]:
    """Record failed and empty tiles on the result -> the tiles that can be classified (context complete)."""
    to_predict: list[tuple[int, int]] = []
    for x, y in todo:
        image = images.get((x, y))
        if isinstance(image, ImageryError):
            result.tiles.append(TileRow(z, x, y, "failed", error=str(image)))
        elif image is None:
            result.tiles.append(TileRow(z, x, y, "empty"))
        else:
            bad = [images[nb] for nb in neighbours(x, y, z, ring) if isinstance(images.get(nb), ImageryError)]
            if bad:
                result.tiles.append(TileRow(z, x, y, "failed", error=f"neighbour needed for context failed: {bad[0]}"))
            else:
                to_predict.append((x, y))
    return to_predict


def _unit_frame(
    unit: Unit, images: dict, ring: int, tile_px: int, margin_px: int
) -> tuple[np.ndarray, int, int, int, int]:
    """The unit's tiles plus ``margin_px`` of the ring around them, at the model's tile size -> (frame, x0, y0, nx, ny).

    The frame is the AOI tiles of the whole unit plus one ring: fixed for a given AOI, so a resumed scan
    classifies every tile with exactly the same input as an uninterrupted one.
    """
    xs = [x for x, _ in unit.tiles]
    ys = [y for _, y in unit.tiles]
    x0, y0 = min(xs) - ring, min(ys) - ring
    nx, ny = max(xs) - min(xs) + 1 + 2 * ring, max(ys) - min(ys) + 1 + 2 * ring
    frame = np.zeros((ny * TILE_SIZE_PX, nx * TILE_SIZE_PX, 3), dtype=np.uint8)
    for (tx, ty), image in images.items():
        if image is None or isinstance(image, ImageryError):
            continue
        r, c = (ty - y0) * TILE_SIZE_PX, (tx - x0) * TILE_SIZE_PX
        frame[r : r + TILE_SIZE_PX, c : c + TILE_SIZE_PX] = image.pixels
    if tile_px != TILE_SIZE_PX:
        frame = resample(frame, ny * tile_px, nx * tile_px)
    cut = ring * tile_px - margin_px
    return frame[cut : frame.shape[0] - cut, cut : frame.shape[1] - cut], x0, y0, nx, ny


def resample(pixels: np.ndarray, height_px: int, width_px: int) -> np.ndarray:
    """HxWx3 uint8 -> height_px x width_px, bilinear with antialiasing: Pillow's BILINEAR filter (within one grey
    level) at twice its speed on a scan unit's frame (torch's uint8 channels-last path)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None]  # NCHW view of HWC: channels last
    with torch.inference_mode():
        y = F.interpolate(x, size=(height_px, width_px), mode="bilinear", antialias=True, align_corners=False)
    return np.ascontiguousarray(y[0].permute(1, 2, 0).numpy())


def _classify(
    unit: Unit, context: ScanContext, images: dict, to_predict: list[tuple[int, int]], ring: int, result: UnitResult
) -> None:
    """Classify the unit's frame in blocks and record each tile's probability grid on the result."""
    t, m, g, z = context.tile_px, context.margin_px, context.cells_per_tile, context.zoom
    frame, x0, y0, nx, ny = _unit_frame(unit, images, ring, t, m)
    model = get_model(context.model_path, context.model_version, context.int8)
    off = m // context.cell_px
    b = max(1, context.block_tiles)
    by_block: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for x, y in to_predict:
        by_block.setdefault(((x - x0 - ring) // b, (y - y0 - ring) // b), []).append((x, y))
    # Classify the frame in fixed sub-blocks of b x b tiles (each with its margin): a few-Mpx input keeps
    # the network's activations in cache, which is much faster per pixel than one huge pass.
    for (bx, by), tiles in sorted(by_block.items()):
        ntx, nty = min(b, nx - 2 * ring - bx * b), min(b, ny - 2 * ring - by * b)
        sub = frame[by * b * t : (by * b + nty) * t + 2 * m, bx * b * t : (bx * b + ntx) * t + 2 * m]
        grid, cell_embeddings = model.grid_and_cell_embeddings(np.ascontiguousarray(sub), margin_cells=off)
        for x, y in tiles:
            r, c = (y - y0 - ring - by * b) * g, (x - x0 - ring - bx * b) * g
            cells, valid_cells = cells_with_imagery(grid[r : r + g, c : c + g], images[(x, y)])
            date = images[(x, y)].capture_date
            embedding = model.tile_embedding(cell_embeddings, r, c, g) if cell_embeddings is not None else None
            result.tiles.append(
                TileRow(
                    z,
                    x,
                    y,
                    "done",
                    capture_date=date.isoformat() if date else None,
                    max_prob=float(cells.max()),
                    grid_cells=g,
                    grid=quantize(cells).tobytes(),
                    embedding=embedding,
                    valid_cells=valid_cells,
                )
            )


def cells_with_imagery(cells: np.ndarray, image: GeoImage) -> tuple[np.ndarray, bytes | None]:
    """A tile's probability cells, 0 where a cell has no imagery, and its valid_cells blob (None: all cells have).

    From the tile's own mask: a cell has imagery when at least MIN_VALID_SHARE of its pixels do.
    """
    if image.valid is None:
        return cells, None
    g = cells.shape[0]
    edges = np.linspace(0, image.valid.shape[0], g + 1).round().astype(int)
    counts = np.add.reduceat(np.add.reduceat(image.valid.astype(np.int32), edges[:-1], axis=0), edges[:-1], axis=1)
    sizes = np.outer(np.diff(edges), np.diff(edges))
    ok = counts >= MIN_VALID_SHARE * sizes
    if ok.all():
        return cells, None
    return np.where(ok, cells, 0).astype(cells.dtype), ok.astype(np.uint8).tobytes()


def quantize(probs: np.ndarray) -> np.ndarray:
    """Probabilities 0..1 to uint8 0..255 (rounded)."""
    return np.clip(np.rint(np.asarray(probs, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
