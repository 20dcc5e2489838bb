"""Backbone features of labelled chips, each view computed once and kept in a SQLite feature cache.

A chip's views are the 8 flips/rotations (views 0-7, view 0 = the chip as is) and ``jitter_copies``
colour-jittered copies (views 8+, each under a random flip/rotation). The cache key is the backbone
digest plus the preprocessing (working scale, jitter recipe), the chip's pixel hash and the view, so
any change of weights, scale or jitter misses the cache instead of reusing stale vectors.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from amberwatch.db import StorageConnection
from amberwatch.errors import DatabaseError
from amberwatch.labels.store import pixel_sha256
from amberwatch.model.augment import AugmentConfig, colour_jitter
from amberwatch.model.backbone import FEATURE_DIM, Backbone

DIHEDRAL_VIEWS = 8
PREP_VERSION = "1"
JITTER = AugmentConfig()  # the CNN recipe's colour/season jitter, reused for the jittered copies

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chip_features (
    prep TEXT NOT NULL,        -- backbone digest + preprocessing identity
    chip_sha256 TEXT NOT NULL, -- sha256 of the chip's shape and pixels
    view INTEGER NOT NULL,
    vector BLOB NOT NULL,      -- float32 x FEATURE_DIM (x 2 with std)
    PRIMARY KEY (prep, chip_sha256, view)
) WITHOUT ROWID;
"""


class FeatureCache:
    """Owns the chip_features table of one cache file; vectors are float32."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=60, factory=StorageConnection)
            self._conn.storage_name = f"feature cache {str(self.path)!r}"  # a full disk: StorageFullError naming it
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise DatabaseError(f"{str(self.path)!r}: cannot open the feature cache ({exc})") from exc

    def get(self, prep: str, sha: str) -> dict[int, np.ndarray]:
        """Cached views of one chip: view -> vector."""
        rows = self._conn.execute(
            "SELECT view, vector FROM chip_features WHERE prep = ? AND chip_sha256 = ?", (prep, sha)
        ).fetchall()
        return {int(v): np.frombuffer(b, dtype=np.float32) for v, b in rows}

    def put(self, prep: str, sha: str, vectors: dict[int, np.ndarray]) -> None:
        """Store views of one chip (one transaction)."""
        with self._conn:
            self._conn.executemany(
                "INSERT OR REPLACE INTO chip_features (prep, chip_sha256, view, vector) VALUES (?, ?, ?, ?)",
                [(prep, sha, int(v), np.asarray(vec, dtype=np.float32).tobytes()) for v, vec in vectors.items()],
            )

    def count(self) -> int:
        """Number of stored vectors."""
        return int(self._conn.execute("SELECT count(*) FROM chip_features").fetchone()[0])

    def close(self) -> None:
        """Close the file."""
        self._conn.close()


def rescale(chip: np.ndarray, scale: float) -> np.ndarray:
    """Resize an HxWx3 uint8 chip by `scale` (bilinear, antialiased when shrinking); 1.0 returns it as is."""
    if abs(scale - 1.0) < 1e-6:
        return chip
    h, w = chip.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(chip).resize(size, Image.Resampling.BILINEAR), dtype=np.uint8)


def dihedral(arr: np.ndarray, k: int) -> np.ndarray:
    """View k (0..7) of an HxWxC array: k % 4 quarter turns, mirrored when k >= 4."""
    out = np.rot90(arr, k % 4, axes=(0, 1))
    return np.ascontiguousarray(out[:, ::-1] if k >= 4 else out)


def _to_tensor(arrays: Sequence[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()


def view_images(chip: np.ndarray, sha: str, views: Sequence[int]) -> dict[int, torch.Tensor]:
    """Float 1x3xHxW tensors of the requested views of an already rescaled chip (jitter seeded by the hash)."""
    out: dict[int, torch.Tensor] = {}
    for v in views:
        if v < DIHEDRAL_VIEWS:
            out[v] = _to_tensor([dihedral(chip, v)])
        else:
            rng = np.random.default_rng([int(sha[:15], 16), v])
            x = _to_tensor([dihedral(chip, int(rng.integers(DIHEDRAL_VIEWS)))])
            out[v] = colour_jitter(x, JITTER, rng)
    return out


def compute_views(
    backbone: Backbone, chip: np.ndarray, sha: str, views: Sequence[int], border_px: int = 0, with_std: bool = False
) -> dict[int, np.ndarray]:
    """Pooled backbone features of the requested views; views of equal shape share one batch."""
    images = view_images(chip, sha, views)
    by_shape: dict[tuple[int, int], list[int]] = {}
    for v, x in images.items():
        by_shape.setdefault(tuple(x.shape[2:]), []).append(v)
    out: dict[int, np.ndarray] = {}
    with torch.inference_mode():
        for vs in by_shape.values():
            feats = backbone.pooled(torch.cat([images[v] for v in vs]), border_px, with_std=with_std).numpy()
            out.update({v: feats[i].astype(np.float32) for i, v in enumerate(vs)})
    return out


def chip_features(
    backbone: Backbone,
    chips: Sequence[np.ndarray],
    *,
    scale: float,
    jitter_copies: int,
    border_px: int = 0,
    with_std: bool = False,
    cache: FeatureCache | None = None,
    log: Callable[[str], None] | None = None,
    stats: dict | None = None,
    shas: Sequence[str] | None = None,
) -> np.ndarray:
    """(N, 8 + jitter_copies, FEATURE_DIM or 2 x FEATURE_DIM with_std) float32 features of every view, cached
    (shas: the chips' pixel sha256s when already known)."""
    views = list(range(DIHEDRAL_VIEWS + jitter_copies))
    prep = prep_key(backbone, scale, border_px, with_std)
    out = np.zeros((len(chips), len(views), FEATURE_DIM * (2 if with_std else 1)), dtype=np.float32)
    computed = 0
    t0 = last = time.perf_counter()
    for i, chip in enumerate(chips):
        sha = pixel_sha256(chip) if shas is None else shas[i]
        have = cache.get(prep, sha) if cache is not None else {}
        missing = [v for v in views if v not in have]
        if missing:
            new = compute_views(backbone, rescale(chip, scale), sha, missing, border_px, with_std)
            if cache is not None:
                cache.put(prep, sha, new)
            have = {**have, **new}
            computed += len(missing)
        out[i] = np.stack([have[v] for v in views])
        if log and time.perf_counter() - last > 30:
            last = time.perf_counter()
            log(f"  features: {i + 1}/{len(chips)} chips ({computed} views computed, {last - t0:.0f} s)")
    if stats is not None:
        stats["views_computed"] = stats.get("views_computed", 0) + computed
    if log and computed:
        log(f"features: {computed} views computed for {len(chips)} chips in {time.perf_counter() - t0:.0f} s")
    return out


def prep_key(backbone: Backbone, scale: float, border_px: int = 0, with_std: bool = False) -> str:
    """Identity of what a cached vector depends on besides the chip: weights, scale, pooling, jitter."""
    # blur_p=0.0 names an augmentation option removed from AugmentConfig (never used here); kept in the key so
    # feature caches written before its removal stay valid.
    items = {"blur_p": 0.0, **JITTER.to_dict()}
    jitter = ",".join(f"{k}={v}" for k, v in sorted(items.items()))
    stats = "|std" if with_std else ""  # mean-only keys stay as they were, so older caches stay valid
    return f"{backbone.digest[:16]}|prep{PREP_VERSION}|scale={scale:.4f}|border={border_px}{stats}|{jitter}"
