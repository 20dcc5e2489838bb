"""The unit of scan work: fetch blocks of tiles with a ring of neighbours, classify each in one pass, return grids.

``process_unit(unit, context)`` is pure and picklable so any runner (local process pool, Dask) can call
it. It never writes the project DB; it only reads/writes the shared tile cache through the imagery
source. The model and the source are opened once per worker process and kept in module globals.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from amberwatch.errors import ImageryError, UnreachableError
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.open import open_ref
from amberwatch.imagery.sources import collect_tile_warnings
from amberwatch.imagery.tiles import tile_lnglat_bbox
from amberwatch.imagery.types import TILE_SIZE_PX, GeoImage, ImageryRef
from amberwatch.model.classifier import ScanPass
from amberwatch.model.modelfile import load
from amberwatch.results.store import TileRow
from amberwatch.scan.tiling import Unit, iter_units

_MODELS: dict[tuple[str, str], object] = {}
_SOURCES: dict[tuple, object] = {}
_CACHES: dict[str, object] = {}
MIN_VALID_SHARE = 0.5  # a cell counts as scanned ground when at least this share of its pixels has imagery


@dataclass(frozen=True)
class ScanContext:
    """Everything a worker needs to process units, as plain picklable values."""

    imagery: ImageryRef  # the imagery (spec, options, date or release), as open_ref opens it
    cache_path: str  # shared tile cache file
    model_path: str | None  # None = bundled model
    model_version: str
    zoom: int
    tile_px: int  # side of one tile after resampling to the model's resolution (multiple of cell_px)
    margin_px: int  # context margin around the block, in model pixels (multiple of cell_px)
    cell_px: int
    torch_threads: int | None = 1
    block_tiles: int = 4  # tiles per side of one predict_grid call (plus margin); blocks are (x // b, y // b)
    int8: bool = False  # score maps through the model's int8 backbone
    model_sha256: str | None = None  # sha256 of the model file as the scan loaded it: workers check theirs against it

    @property
    def cells_per_tile(self) -> int:
        """Probability cells per tile side."""
        return self.tile_px // self.cell_px

    @property
    def ring_tiles(self) -> int:
        """Tiles of context read around a block: enough for the margin (1 unless tiles are tiny)."""
        return max(1, -(-self.margin_px // self.tile_px))


@dataclass(frozen=True)
class CoarseContext:
    """Where a fine pass after triage reads its tiles: at the scan's zoom for ``fine``, every other tile as its parent
    at ``zoom`` (the triage pass's, cached) upsampled (RESULTS 25). The scan holds the whole set, a unit its share."""

    zoom: int  # the coarse (triage) zoom
    fine: frozenset[tuple[int, int]]

    def for_unit(self, unit: Unit, ring: int) -> CoarseContext:
        """The share of one unit: the tiles of ``fine`` within ``ring`` tiles of it (all it may read)."""
        xs, ys = [x for x, _ in unit.tiles], [y for _, y in unit.tiles]
        cols, rows = range(min(xs) - ring, max(xs) + ring + 1), range(min(ys) - ring, max(ys) + ring + 1)
        return CoarseContext(self.zoom, frozenset((x, y) for y in rows for x in cols if (x, y) in self.fine))


@dataclass
class UnitResult:
    """The per-tile results of one unit plus timings."""

    unit: Unit
    tiles: list[TileRow] = field(default_factory=list)
    fetch_s: float = 0.0  # time its blocks waited for their tiles: the reading not hidden behind classifying
    predict_s: float = 0.0  # time spent sorting out and classifying its blocks (waits for tiles excluded)
    cpu_s: float = 0.0  # CPU time of this process spent on the unit (fetch + decode + classify)
    warnings: dict[str, int] = field(default_factory=dict)  # amberwatch warning class name -> count
    reads_ok: int = 0  # tile reads (the tiles of its blocks and their ring) that gave an image or "no imagery"
    reads_unreachable: int = 0  # tile reads that failed to resolve or connect to the server
    reads_failed: int = 0  # tile reads that failed otherwise (HTTP errors, timeouts, bad images)


def get_model(path: str | None, version: str, int8: bool = False, file_sha256: str | None = None):
    """The classifier for (path, version), loaded once per process (int8: its quantized backbone for maps), checked
    against ``file_sha256`` when given (a ModelError if the file changed since the scan loaded it)."""
    key = (path or "<bundled>", version, int8)
    model = _MODELS.get(key)
    if model is None:
        model = load(path, file_sha256, recorded_by="the scan (the file as it loaded it at its start)")
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
    return (context.imagery, context.cache_path)


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
        source = open_ref(context.imagery, cache=cache)
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


def block_of(x: int, y: int, block_tiles: int) -> tuple[int, int]:
    """(bx, by) of the block holding tile (x, y): blocks are block_tiles x block_tiles tiles of the tile grid."""
    return x // block_tiles, y // block_tiles


@dataclass(frozen=True)
class Block:
    """What a scan classifies in one pass: the bounding box of the AOI's tiles in one block of the tile grid."""

    x0: int
    y0: int
    nx: int
    ny: int


def unit_blocks(unit: Unit, todo: tuple[tuple[int, int], ...], block_tiles: int) -> dict[Block, list[tuple[int, int]]]:
    """The blocks holding tiles of todo -> those tiles. A block spans the AOI's tiles in its square of the grid,
    which a unit (8 x 8 or 16 x 16 tiles) holds whole: the same block in units of any size, resumed or not."""
    by_square: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for x, y in {*unit.tiles, *todo}:
        by_square.setdefault(block_of(x, y, block_tiles), []).append((x, y))
    spans = {}
    for square, tiles in by_square.items():
        xs, ys = [x for x, _ in tiles], [y for _, y in tiles]
        spans[square] = Block(min(xs), min(ys), max(xs) - min(xs) + 1, max(ys) - min(ys) + 1)
    blocks: dict[Block, list[tuple[int, int]]] = {}
    for x, y in todo:
        blocks.setdefault(spans[block_of(x, y, block_tiles)], []).append((x, y))
    return blocks


def block_frame_tiles(block: Block, context: ScanContext) -> list[tuple[int, int]]:
    """Every tile (x, y) of a block's frame: all its tiles and their ring of neighbours that exist at the zoom."""
    ring, n = context.ring_tiles, 1 << context.zoom
    x0, y0 = block.x0 - ring, block.y0 - ring
    return [
        (x0 + i, y0 + j)
        for j in range(block.ny + 2 * ring)
        for i in range(block.nx + 2 * ring)
        if 0 <= x0 + i < n and 0 <= y0 + j < n
    ]


def block_passes(block: Block, tiles: list[tuple[int, int]], context: ScanContext, model: object) -> list[ScanPass]:
    """The model's backbone passes over the block's frame that the cells of ``tiles`` need (every pass when they
    fill the block): each tile's grid is then the one the whole frame gives it."""
    g, t, m = context.cells_per_tile, context.tile_px, context.margin_px
    wanted = np.zeros((block.ny * g, block.nx * g), dtype=bool)
    for x, y in tiles:
        r, c = (y - block.y0) * g, (x - block.x0) * g
        wanted[r : r + g, c : c + g] = True
    return model.passes_for(block.ny * t + 2 * m, block.nx * t + 2 * m, m // context.cell_px, wanted)


def pass_tiles(block: Block, passes: list[ScanPass], context: ScanContext) -> set[tuple[int, int]]:
    """The tiles of the block's frame under the pixels the passes read (and the resampling filter's reach)."""
    ring, t = context.ring_tiles, context.tile_px
    cut = ring * t - context.margin_px  # frame px -> px of the frame's whole tiles
    reach = 0 if t == TILE_SIZE_PX else t // TILE_SIZE_PX + 2  # model px a resampled pixel draws on, with rounding
    frame = set(block_frame_tiles(block, context))
    x0, y0 = block.x0 - ring, block.y0 - ring
    out: set[tuple[int, int]] = set()
    for one in passes:
        top, bottom, left, right = (v + cut + d for v, d in zip(one.reads, (-reach, reach, -reach, reach), strict=True))
        rows, cols = range(top // t, -(-bottom // t)), range(left // t, -(-right // t))
        out.update(tile for j in rows for i in cols if (tile := (x0 + i, y0 + j)) in frame)
    return out


def tiles_read(
    block: Block, passes: list[ScanPass], tiles: list[tuple[int, int]], context: ScanContext
) -> set[tuple[int, int]]:
    """The tiles a block's ``passes`` read, and the ring of neighbours of its ``tiles`` (their no-data check)."""
    reads = pass_tiles(block, passes, context)
    reads.update(nb for x, y in tiles for nb in neighbours(x, y, context.zoom, context.ring_tiles))
    return reads


def free_tiles(
    unit: Unit, todo: tuple[tuple[int, int], ...], context: ScanContext, model: object, memo: dict | None = None
) -> set[tuple[int, int]]:
    """The unit's tiles beyond ``todo`` whose grids come free with todo's: in a block with tiles of todo, those whose
    cells' windows take in only the backbone passes todo's tiles need and whose ring of neighbours those passes (or
    todo's ring) read anyway. Decided per block, so the same in units of any size; ``memo`` is shared across calls.

    Processing them with todo runs no more passes and reads no more tiles, and gives them the full scan's grids."""
    memo = {} if memo is None else memo
    wanted, out = set(todo), set()
    for block, tiles in unit_blocks(unit, unit.tiles, context.block_tiles).items():
        mine = [t for t in tiles if t in wanted]
        if not mine or len(mine) == len(tiles):
            continue
        passes = set(block_passes(block, mine, context, model))
        reads = tiles_read(block, list(passes), mine, context)
        for x, y in tiles:
            key = (block.nx, block.ny, x - block.x0, y - block.y0)
            if key not in memo:  # a tile's passes hang on its place in a block of that shape alone
                memo[key] = frozenset(block_passes(block, [(x, y)], context, model))
            ring = neighbours(x, y, context.zoom, context.ring_tiles)
            if (x, y) not in wanted and memo[key] <= passes and reads.issuperset(ring):
                out.add((x, y))
    return out


def with_free_tiles(
    geometry: object, kept: frozenset[tuple[int, int]], context: ScanContext, model: object
) -> frozenset[tuple[int, int]]:
    """``kept`` and every AOI tile (of ``geometry`` at the context's zoom) whose grid comes free with them
    (``free_tiles``): a fixed function of the kept tiles, the AOI, the model's passes and the framing."""
    memo: dict = {}
    out = set(kept)
    for unit in iter_units(geometry, context.zoom):
        todo = tuple(t for t in unit.tiles if t in kept)
        if todo:
            out |= free_tiles(unit, todo, context, model, memo)
    return frozenset(out)


def process_unit(
    unit: Unit,
    context: ScanContext,
    todo: tuple[tuple[int, int], ...] | None = None,
    coarse: CoarseContext | None = None,
) -> UnitResult:
    """Fetch, classify and grid the tiles ``todo`` (default: all) of a unit; never touches the project DB.

    Tiles are classified per block of the tile grid, each block framed from all the AOI's tiles in it and their ring
    whatever the unit or ``todo``: a tile's grid is a fixed function of the imagery and the AOI, the same in units
    of any size, with any number of workers, local or on Dask, in a resumed scan and in a fine pass after triage
    (whose ``todo`` is the kept tiles). Only the model's passes over a frame that the tiles of ``todo`` need are run,
    and only the tiles those passes read (and the tiles' ring of neighbours) are read.

    With ``coarse`` (a fine pass's ``--triage-context coarse``), only the tiles of ``coarse.fine`` are read at the
    scan's zoom and the others come from their coarse parents, upsampled: the grid is then a fixed function of the
    imagery, the AOI and that set, which the scan fixes once.

    Reading overlaps classifying: a reader thread (``_Reader``) reads the blocks' tiles, each once, in the order the
    blocks are classified, while the blocks before are classified; a block waits only for its own tiles.
    """
    todo = unit.tiles if todo is None else todo
    result = UnitResult(unit=unit)
    if not todo:
        return result
    cpu_started = time.process_time()
    model = get_model(context.model_path, context.model_version, context.int8, context.model_sha256)
    blocks = unit_blocks(unit, todo, context.block_tiles)
    order = sorted(blocks, key=lambda block: (block.y0, block.x0))
    passes = {block: block_passes(block, blocks[block], context, model) for block in order}
    batches = first_reads([tiles_read(block, passes[block], blocks[block], context) for block in order])
    images: dict[tuple[int, int], object] = {}
    with _Reader(get_source(context), context.zoom, batches, coarse) as reader:
        for block in order:
            started = time.perf_counter()
            images.update(reader.next_batch(result))
            result.fetch_s += time.perf_counter() - started
            started = time.perf_counter()
            to_predict = _triage(blocks[block], images, context.zoom, context.ring_tiles, result)
            if to_predict:
                _classify_block(block, context, images, to_predict, result, passes[block])
            result.predict_s += time.perf_counter() - started
    result.cpu_s = time.process_time() - cpu_started
    return result


def first_reads(reads: list[set[tuple[int, int]]]) -> list[list[tuple[int, int]]]:
    """Per block in turn, its tiles that no block before it reads (sorted): every tile of the unit read once."""
    seen: set[tuple[int, int]] = set()
    batches = []
    for tiles in reads:
        batches.append(sorted(tiles - seen))
        seen |= tiles
    return batches


class _Reader:
    """Reads batches of tiles on a background thread, in order, while the caller classifies the batches before.

    The source (and its cache) is used by that thread alone while it runs. Leaving the ``with`` stops it at its next
    tile and waits for it; an exception in it (a bug: a failed tile is a result, not an exception) is raised by
    ``next_batch`` in the caller.
    """

    def __init__(
        self, source: object, zoom: int, batches: list[list[tuple[int, int]]], coarse: CoarseContext | None = None
    ) -> None:
        self._out: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(source, zoom, batches, coarse), name="amberwatch-unit-reader", daemon=True
        )

    def __enter__(self) -> _Reader:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(
        self, source: object, zoom: int, batches: list[list[tuple[int, int]]], coarse: CoarseContext | None
    ) -> None:
        try:
            _read_tiles(source, zoom, batches, self._out.put, self._stop, coarse)
        except BaseException as exc:  # handed to the caller, which raises it
            self._out.put(exc)

    def next_batch(self, result: UnitResult) -> dict[tuple[int, int], object]:
        """Wait for the next batch's images; count its reads and typed warnings on the result."""
        item = self._out.get()
        if isinstance(item, BaseException):
            raise item
        images, warned = item
        for image in images.values():
            if isinstance(image, UnreachableError):
                result.reads_unreachable += 1
            elif isinstance(image, ImageryError):
                result.reads_failed += 1
            else:
                result.reads_ok += 1
        for name in warned:
            result.warnings[name] = result.warnings.get(name, 0) + 1
        return images


def _read_tiles(
    source: object,
    zoom: int,
    batches: list[list[tuple[int, int]]],
    publish: Callable,
    stop: threading.Event,
    coarse: CoarseContext | None = None,
) -> None:
    """Read the batches' tiles (x, y) at ``zoom`` in one stream (an HTTP source keeps requests in flight across
    batches; ``coarse``: as ``read_with_coarse``) and ``publish`` each batch's images and typed warning names, in
    order, once all its tiles are in."""
    owner = {tile: k for k, batch in enumerate(batches) for tile in batch}
    images: list[dict[tuple[int, int], object]] = [{} for _ in batches]
    left = [len(batch) for batch in batches]
    done = 0
    with collect_tile_warnings() as caught:

        def publish_ready() -> None:
            nonlocal done
            while done < len(batches) and left[done] == 0:
                publish((images[done], [type(w).__name__ for w in caught]))
                caught.clear()
                done += 1

        publish_ready()  # batches with nothing left to read
        reads = read_with_coarse(source, zoom, [tile for batch in batches for tile in batch], coarse)
        try:
            for (_z, x, y), image in reads:
                images[owner[(x, y)]][(x, y)] = image
                left[owner[(x, y)]] -= 1
                publish_ready()
                if stop.is_set():
                    break
        finally:
            reads.close()


def read_with_coarse(
    source: object, zoom: int, tiles: list[tuple[int, int]], coarse: CoarseContext | None
) -> Iterator[tuple[tuple[int, int, int], object]]:
    """((zoom, x, y), image) of each tile, in any order: read at ``zoom`` (without ``coarse``, or in ``coarse.fine``),
    else cut from its parent at ``coarse.zoom`` upsampled to ``zoom`` (each parent read once: no imagery or a failed
    read there is the children's too)."""
    if coarse is None:
        yield from source.read_tiles((zoom, x, y) for x, y in tiles)
        return
    shift = zoom - coarse.zoom
    children: dict[tuple[int, int], list[tuple[int, int]]] = {}
    keys = []
    for x, y in tiles:
        if (x, y) in coarse.fine:
            keys.append((zoom, x, y))
            continue
        parent = (x >> shift, y >> shift)
        if parent not in children:
            children[parent] = []
            keys.append((coarse.zoom, *parent))
        children[parent].append((x, y))
    reads = source.read_tiles(iter(keys))
    try:
        for (z, x, y), image in reads:
            if z == zoom:
                yield (z, x, y), image
            else:
                yield from upsampled_children(image, shift, zoom, children[(x, y)])
    finally:
        reads.close()


def upsampled_children(
    parent: GeoImage | ImageryError | None, shift: int, zoom: int, tiles: list[tuple[int, int]]
) -> Iterator[tuple[tuple[int, int, int], object]]:
    """((zoom, x, y), image) of child tiles of a tile ``shift`` zooms above, cut from it upsampled to ``zoom`` (the
    scan's own ``resample``, over the whole parent so no seam falls on a child's edge); None or a failed read is
    theirs too."""
    if not isinstance(parent, GeoImage):
        for x, y in tiles:
            yield (zoom, x, y), parent
        return
    f = 1 << shift
    n = TILE_SIZE_PX
    pixels = resample(parent.pixels, n * f, n * f)
    valid = None if parent.valid is None else parent.valid.repeat(f, 0).repeat(f, 1)
    for x, y in tiles:
        r, c = (y % f) * n, (x % f) * n
        yield (
            (zoom, x, y),
            GeoImage(
                pixels=np.ascontiguousarray(pixels[r : r + n, c : c + n]),
                bbox=tile_lnglat_bbox(zoom, x, y),
                resolution_m_per_px=parent.resolution_m_per_px / f,
                source_id=parent.source_id,
                capture_date=parent.capture_date,
                tile=(x, y, zoom),
                valid=None if valid is None else np.ascontiguousarray(valid[r : r + n, c : c + n]),
            ),
        )


def fine_context_tiles(
    scanned: frozenset[tuple[int, int]], warm: frozenset[tuple[int, int]], zoom: int, ring: int = 1
) -> frozenset[tuple[int, int]]:
    """The tiles a fine pass with a coarse context reads at its zoom: the ``scanned`` ones, and the ring of those
    of them that are ``warm`` (any coarse cell over them above zero, or a failed coarse tile)."""
    out = set(scanned)
    for x, y in scanned & warm:
        out.update(neighbours(x, y, zoom, ring))
    return frozenset(out)


def _triage(todo, images: dict, z: int, ring: int, result: UnitResult) -> list[tuple[int, int]]:
    """Record failed and empty tiles on the result -> the tiles that can be classified.

    A tile fails with a failed read among its ring of neighbours (its scores hang on them); tiles farther from a
    failed read are classified with zeros in its place, as for no imagery, so one bad tile costs 9, not its block.
    """
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


def _block_frame(block: Block, context: ScanContext, images: dict) -> np.ndarray:
    """The block's tiles plus ``margin_px`` of their ring, at the model's tile size (zeros where there is no imagery,
    a read failed or no pass needs the tile). Always the whole block and ring, so the model's input for the passes
    that run depends on the imagery and AOI only."""
    ring, t, m = context.ring_tiles, context.tile_px, context.margin_px
    x0, y0, nx, ny = block.x0 - ring, block.y0 - ring, block.nx + 2 * ring, block.ny + 2 * ring
    frame = np.zeros((ny * TILE_SIZE_PX, nx * TILE_SIZE_PX, 3), dtype=np.uint8)
    for tx, ty in block_frame_tiles(block, context):
        image = images.get((tx, ty))
        if image is None or isinstance(image, ImageryError):
            continue
        r, c = (ty - y0) * TILE_SIZE_PX, (tx - x0) * TILE_SIZE_PX
        frame[r : r + TILE_SIZE_PX, c : c + TILE_SIZE_PX] = image.pixels
    if t != TILE_SIZE_PX:
        frame = resample(frame, ny * t, nx * t)
    cut = ring * t - m
    return np.ascontiguousarray(frame[cut : frame.shape[0] - cut, cut : frame.shape[1] - cut])


def resample(pixels: np.ndarray, height_px: int, width_px: int) -> np.ndarray:
    """HxWx3 uint8 -> height_px x width_px, bilinear with antialiasing: Pillow's BILINEAR filter (within one grey
    level) at twice its speed on a scan unit's frame (torch's uint8 channels-last path)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None]  # NCHW view of HWC: channels last
    with torch.inference_mode():
        y = F.interpolate(x, size=(height_px, width_px), mode="bilinear", antialias=True, align_corners=False)
    return np.ascontiguousarray(y[0].permute(1, 2, 0).numpy())


def _classify_block(
    block: Block,
    context: ScanContext,
    images: dict,
    to_predict: list[tuple[int, int]],
    result: UnitResult,
    passes: list[ScanPass],
) -> None:
    """Classify one block's frame by the model's ``passes`` and record the probability grids of ``to_predict``.

    A few-Mpx input keeps the network's activations in cache, much faster per pixel than one huge pass.
    """
    g, z = context.cells_per_tile, context.zoom
    model = get_model(context.model_path, context.model_version, context.int8, context.model_sha256)
    frame = _block_frame(block, context, images)
    margin_cells = context.margin_px // context.cell_px
    grid, cell_embeddings = model.grid_and_cell_embeddings(frame, margin_cells=margin_cells, passes=passes)
    for x, y in to_predict:
        r, c = (y - block.y0) * g, (x - block.x0) * g
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
