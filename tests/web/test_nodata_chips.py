"""No black no-data bands in what people see: popup thumbnails, similar-place chips, review and label views."""

from __future__ import annotations

import mercantile
import numpy as np

from amberwatch.db import connect
from amberwatch.imagery.decode import decode_image, encode_jpeg
from amberwatch.review.chips import CHECKER_RGB, neutral_nodata, nodata_mask
from tests.web.conftest import insert_detections


def dark_share(pixels: np.ndarray) -> float:
    """Share of near-black pixels (no-data as a JPEG shows it)."""
    return float((pixels.max(axis=2) <= 12).mean())


def frame(pixels: np.ndarray, frac: float = 0.08) -> np.ndarray:
    """The outer band of an image (where the imagery's edge shows), as one list of pixels."""
    h, w = pixels.shape[:2]
    k, m = max(1, int(h * frac)), max(1, int(w * frac))
    return np.concatenate(
        [
            pixels[:k].reshape(-1, 3),
            pixels[-k:].reshape(-1, 3),
            pixels[:, :m].reshape(-1, 3),
            pixels[:, -m:].reshape(-1, 3),
        ]
    )


def test_neutral_nodata_fills_the_border_band_with_a_light_checkerboard():
    pixels = np.full((64, 64, 3), 120, np.uint8)
    pixels[:, :10] = 0  # a no-data band at the imagery's edge
    pixels[30:33, 30:33] = 0  # a small dark pit inside: imagery, kept
    assert nodata_mask(pixels)[:, :10].all() and not nodata_mask(pixels)[31, 31]
    shown = neutral_nodata(pixels)
    assert shown[:, :10].min() >= min(min(c) for c in CHECKER_RGB) - 1 and (shown[31, 31] == 0).all()
    assert len({tuple(p) for p in shown[:, :10].reshape(-1, 3)}) == 2  # the two checker colours
    assert neutral_nodata(pixels[:, 12:]) is not None and (neutral_nodata(pixels[:, 12:])[0, 0] == 120).all()


def test_similar_place_chip_of_an_edge_tile_has_no_black_band(client, project):
    z, x, y = max(project.tiles, key=lambda t: (t[1], t[2]))  # the bottom-right tile: its context lies outside
    r = client.get(f"/api/scans/{project.scan_id}/tiles/{z}/{x}/{y}/chip.jpg")
    assert r.status_code == 200
    pixels = decode_image(r.content)
    assert dark_share(pixels) < 0.002, dark_share(pixels)
    assert (frame(pixels).min(axis=1) > 200).mean() > 0.2  # the checkerboard where no tile is cached


def test_review_chip_and_popup_thumbnail_of_a_site_at_the_imagerys_edge_have_no_black_band(client, project):
    west = min(mercantile.bounds(x, y, z).west for z, x, y in project.tiles)
    north = max(mercantile.bounds(x, y, z).north for z, x, y in project.tiles)
    thumb = np.full((128, 128, 3), 110, np.uint8)
    thumb[:, :40] = 0  # the scan's stored thumbnail of a site at the edge: a black band
    conn = connect(project.db_path)
    (edge,) = insert_detections(
        conn, project.scan_id, [(west + 0.0003, north - 0.0002, 0.0001, 0.9)], encode_jpeg(thumb)
    )
    conn.close()
    for path in ("chip-outline.jpg", "chip.jpg", "thumbnail.jpg"):
        r = client.get(f"/api/detections/{edge}/{path}")
        assert r.status_code == 200, path
        pixels = decode_image(r.content)
        assert (frame(pixels).max(axis=1) <= 12).mean() < 0.01, (path, dark_share(pixels))
