"""Decode image bytes or files into HxWx3 uint8 RGB arrays: the one place modes are converted or refused."""

from __future__ import annotations

import io
import os
import re
import struct
import uuid
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from amberwatch.errors import ImageError, ImageTooLargeError
from amberwatch.imagery.types import TILE_SIZE_PX

MAX_IMAGE_PIXELS = 100_000_000
MAX_TILE_PIXELS = (4 * TILE_SIZE_PX) ** 2  # a tile may be up to 1024 x 1024 px (retina); larger is refused
_BUFFER_REPR = re.compile(r"\s*<_io\.BytesIO object at 0x[0-9a-fA-F]+>")


def to_rgb_array(img: Image.Image, name: str = "<image>") -> np.ndarray:
    """Convert a PIL image of any common mode to HxWx3 uint8 RGB.

    Grayscale, palette and alpha images are converted (alpha composited on black, so transparent
    areas read as no-data); 16-bit and float images are rescaled from their own min/max range.
    CMYK is converted by PIL. Unknown modes are refused naming the file.
    """
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = np.nanpercentile(arr, [0.5, 99.5]) if arr.size else (0.0, 1.0)
        scaled = np.clip((arr - lo) / max(hi - lo, 1e-9) * 255.0, 0, 255).astype(np.uint8)
        return np.repeat(scaled[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"), dtype=np.uint8).copy()
    if mode in ("RGB", "L", "P", "1", "CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    raise ImageError(f"{name}: unsupported image mode {mode!r}")


def decode_image(data: bytes, name: str = "<bytes>", *, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode encoded image bytes (PNG, JPEG, WebP, TIFF...) to HxWx3 uint8 RGB, or raise ImageError.

    Images above ``max_pixels`` are refused from their header, before any pixel is decoded
    (ImageTooLargeError), so a small file that inflates to gigabytes costs nothing.
    """
    return decode_with_valid(data, name, max_pixels=max_pixels)[0]


def decode_with_valid(
    data: bytes, name: str = "<bytes>", *, max_pixels: int = MAX_IMAGE_PIXELS
) -> tuple[np.ndarray, np.ndarray | None]:
    """Like ``decode_image``, also giving the HxW bool mask of pixels with imagery (None: all of them)."""
    if not data:
        raise ImageError(f"{name}: empty file")
    fast = _plain_png(data, min(max_pixels, MAX_TILE_PIXELS))
    if fast is not None:
        return fast, None
    try:
        with Image.open(io.BytesIO(data)) as img:
            _check_pixels(img.width, img.height, max_pixels, name)
            img.load()
            arr = to_rgb_array(img, name)
            valid = alpha_valid(img)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{name}: image is too large to decode ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        reason = _BUFFER_REPR.sub("", str(exc))  # PIL names its in-memory buffer, not the file or tile
        raise ImageError(f"{name}: not a readable image ({reason})") from exc
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageError(f"{name}: image has no pixels")
    return arr, valid


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A world file beside the PNG in GDAL's memory: without a geotransform rasterio warns on every open.
_WORLD_FILE = b"1\n0\n0\n-1\n0\n0\n"


def _plain_png(data: bytes, max_pixels: int) -> np.ndarray | None:
    """A whole 8-bit RGB PNG of at most max_pixels (no alpha, no tRNS, not interlaced, every chunk complete and its
    IDAT CRCs right) decoded by GDAL's PNG driver, else None (Pillow decodes it, or refuses it).

    PNG is lossless, so the pixels are Pillow's; GDAL's decoder (libdeflate, SIMD filters) takes ~0.7 ms for a 256 px
    tile where Pillow takes ~1.7 ms, most of a warm scan's reading. Anything GDAL fails on goes to Pillow as before.
    """
    size = _plain_png_size(data)
    if size is None or size[0] * size[1] > max_pixels:
        return None
    from rasterio.errors import RasterioError
    from rasterio.io import MemoryFile

    out = np.empty((size[1], size[0], 3), dtype=np.uint8)
    folder = uuid.uuid4().hex
    try:
        with (
            MemoryFile(_WORLD_FILE, dirname=folder, filename="tile.wld"),
            MemoryFile(data, dirname=folder, filename="tile.png") as mem,
            mem.open(driver="PNG") as ds,
        ):
            if ds.count != 3 or (ds.width, ds.height) != size or set(ds.dtypes) != {"uint8"}:
                return None
            ds.read(out=out.transpose(2, 0, 1))
    except RasterioError:
        return None
    return out


def _plain_png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG that _plain_png decodes: its chunks walked to IEND, which must end the data."""
    if not data.startswith(_PNG_SIGNATURE):
        return None
    view, pos, size = memoryview(data), len(_PNG_SIGNATURE), None
    while pos + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if end > len(data) or (size is None and (kind != b"IHDR" or length != 13)) or kind == b"tRNS":
            return None
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack_from(">IIBBBBB", data, pos + 8)
            if (depth, colour, interlace) != (8, 2, 0) or not width or not height:
                return None
            size = (width, height)
        elif kind == b"IDAT" and zlib.crc32(view[pos + 4 : end - 4]) != struct.unpack_from(">I", data, end - 4)[0]:
            return None  # libpng checks it, Pillow does not: Pillow decides
        elif kind == b"IEND":
            return size if end == len(data) else None
        pos = end
    return None


def alpha_valid(img: Image.Image) -> np.ndarray | None:
    """HxW bool, True where an image with alpha is mostly opaque; None without alpha or when all of it is."""
    if not (img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)):
        return None
    valid = np.asarray(img.convert("RGBA").getchannel("A"), dtype=np.uint8) >= 128
    return None if valid.all() else valid


def _check_pixels(width: int, height: int, max_pixels: int, name: str) -> None:
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{name}: image of {width}x{height} px is above the limit of {max_pixels:,} px"
            " (a possible decompression bomb); refused"
        )


def read_image_file(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file to HxWx3 uint8 RGB, raising ImageError that names the file."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ImageError(f"{str(p)!r}: cannot read file ({exc.strerror or exc})") from exc
    return decode_image(data, str(p))


def encode_png(pixels: np.ndarray) -> bytes:
    """Encode an HxWx3 uint8 array as PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def encode_jpeg(pixels: np.ndarray, quality: int = 85) -> bytes:
    """Encode an HxWx3 uint8 array as JPEG bytes."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
