"""Decoding tiles: plain 8-bit RGB PNGs through GDAL's fast decoder give Pillow's pixels; anything else is Pillow's."""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from amberwatch.errors import ImageError
from amberwatch.imagery.decode import MAX_TILE_PIXELS, _plain_png, decode_with_valid, to_rgb_array


def _png(arr: np.ndarray, **options: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", **options)
    return buf.getvalue()


def _pillow(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def _photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth gradients plus noise: rows that PNG filters (Sub, Up, Average, Paeth) all get used on."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 3 + yy) % 256, (yy * 2) % 256, (xx + yy * 5) % 256], axis=-1)
    return (base + rng.integers(0, 4, (h, w, 3))).clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    ("shape", "options"),
    [
        ((256, 256), {}),
        ((256, 256), {"compress_level": 1}),
        ((256, 256), {"optimize": True}),
        ((300, 17), {}),
        ((1, 1), {}),
        ((512, 512), {"compress_level": 9}),
    ],
)
def test_plain_rgb_png_is_decoded_fast_to_pillows_pixels(shape: tuple[int, int], options: dict) -> None:
    data = _png(_photo(*shape), **options)
    fast = _plain_png(data, MAX_TILE_PIXELS)
    assert fast is not None and fast.dtype == np.uint8 and fast.flags.c_contiguous
    np.testing.assert_array_equal(fast, _pillow(data))
    pixels, valid = decode_with_valid(data)
    np.testing.assert_array_equal(pixels, _pillow(data))
    assert valid is None


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 8
    while pos < len(data):
        (n,) = struct.unpack_from(">I", data, pos)
        out.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]))
        pos += 12 + n
    return out


def _build(chunks: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(struct.pack(">I", len(b)) + k + b + struct.pack(">I", zlib.crc32(k + b)) for k, b in chunks)
    return b"\x89PNG\r\n\x1a\n" + body


def _odd_pngs() -> dict[str, bytes]:
    arr = _photo(64, 64)
    plain = _png(arr)
    bad_crc = bytearray(plain)
    idat = plain.index(b"IDAT")
    bad_crc[idat + 4 + struct.unpack_from(">I", plain, idat - 4)[0]] ^= 0xFF  # first byte of the IDAT's CRC
    chunks = _chunks(plain)
    with_trns = _build([chunks[0], (b"tRNS", b"\x00\x01\x00\x02\x00\x03"), *chunks[1:]])
    return {
        "truncated": plain[: len(plain) // 2],
        "no IEND": plain[:-12],
        "trailing bytes": plain + b"junk",
        "IDAT CRC wrong": bytes(bad_crc),
        "tRNS": with_trns,
        "RGBA": _png(np.dstack([arr, np.full((64, 64), 200, np.uint8)])),
        "grey": _png(arr[:, :, 0]),
        "palette": _pil_palette(arr),
        "16-bit": _png(arr[:, :, 0].astype(np.uint16) * 200),
        "interlaced": _pil_interlaced(arr),
        "JPEG": _jpeg(arr),
    }


def _pil_palette(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).quantize(16).save(buf, format="PNG")
    return buf.getvalue()


def _pil_interlaced(arr: np.ndarray) -> bytes:
    """The plain PNG with its IHDR's interlace byte set (Pillow reads that as Adam7: it decides)."""
    chunks = _chunks(_png(arr))
    ihdr = chunks[0][1][:12] + b"\x01"
    return _build([(b"IHDR", ihdr), *chunks[1:]])


def _jpeg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.mark.parametrize("kind", list(_odd_pngs()))
def test_anything_but_a_whole_plain_rgb_png_is_left_to_pillow(kind: str) -> None:
    data = _odd_pngs()[kind]
    assert _plain_png(data, MAX_TILE_PIXELS) is None
    try:
        with Image.open(io.BytesIO(data)) as img:
            expected = to_rgb_array(img)  # what decode_with_valid did before the fast path
    except Exception:  # Pillow refuses it: so does decode_with_valid, with an ImageError naming it
        with pytest.raises(ImageError, match=r"^odd\.png: "):
            decode_with_valid(data, "odd.png")
        return
    np.testing.assert_array_equal(decode_with_valid(data, "odd.png")[0], expected)


def test_a_png_over_the_pixel_limit_is_left_to_pillows_header_check() -> None:
    data = _png(_photo(64, 64))
    assert _plain_png(data, 64 * 64 - 1) is None
    assert _plain_png(data, 64 * 64) is not None


def test_the_fast_path_stays_quiet_and_survives_warnings_made_errors() -> None:
    data = _png(_photo(32, 32))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        decode_with_valid(data)
    assert not caught  # no "no geotransform" from rasterio: a tile never has one
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(decode_with_valid(data)[0], _pillow(data))
