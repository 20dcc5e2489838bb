"""Decode image bytes or files into HxWx3 uint8 RGB arrays: the one place modes are converted or refused."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from amberwatch.errors import ImageError

MAX_IMAGE_PIXELS = 100_000_000


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


def decode_image(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes (PNG, JPEG, WebP, TIFF...) to HxWx3 uint8 RGB, or raise ImageError."""
    if not data:
        raise ImageError(f"{name}: empty file")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise ImageError(f"{name}: image of {img.width}x{img.height} px is too large")
            img.load()
            arr = to_rgb_array(img, name)
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{name}: not a readable image ({exc})") from exc
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageError(f"{name}: image has no pixels")
    return arr


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
