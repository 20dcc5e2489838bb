"""Nearest-neighbour search over tile embeddings by cosine similarity: exact in numpy, or a faiss IVF index.

Small scans are searched exactly (a few hundred thousand tiles take tens of milliseconds). From
``EXACT_BELOW`` tiles on, an inverted-file index (faiss ``IVF{n},SQfp16``, inner product on unit vectors)
answers in about a millisecond. Its codes are the same float16 values the exact search reads (128 bytes a
64-dim tile, plus an 8-byte id), so only the probing is approximate: 8-bit scalar quantisation (``SQ8``, 72
bytes a tile) blurs the small score gaps between a query's near neighbours and held recall@10 to ~0.89 on a
million clustered vectors whatever the nprobe. ``bench/similar.py`` measures recall@10 against the exact
search, query time, build time and memory.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from amberwatch.errors import InvalidInputError

EXACT_BELOW = 200_000
EXACT_CHUNK_ROWS = 131_072
ADD_CHUNK_ROWS = 16_384  # rows converted to float32 at a time while building an IVF index (~4 MB)
DEFAULT_NPROBE = 128  # of ~sqrt(N) lists: recall@10 >= 0.99 on 1M clustered vectors, ~1-2 ms a query on one core
TRAIN_PER_LIST = 40  # k-means training points per inverted list (more did not raise recall in bench/similar.py)


class VectorIndex(Protocol):
    """Top-k rows by cosine similarity to a unit query vector."""

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) of the k best rows, best first."""
        ...


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), in float16 to keep 2 bytes a value."""
    vectors = np.asarray(vectors)
    out = np.empty(vectors.shape, dtype=np.float16)
    for a in range(0, len(vectors), EXACT_CHUNK_ROWS):  # float32 copies of one chunk at a time
        v = vectors[a : a + EXACT_CHUNK_ROWS].astype(np.float32)
        norm = np.linalg.norm(v, axis=1, keepdims=True)
        out[a : a + EXACT_CHUNK_ROWS] = v / np.where(norm > 0, norm, 1.0)
    return out


class ExactIndex:
    """Exact cosine search: chunked float32 matrix-vector products over float16 unit rows."""

    def __init__(self, vectors: np.ndarray) -> None:
        self.rows = unit_rows(vectors)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) of the k best rows, best first."""
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        scores = np.empty(len(self.rows), dtype=np.float32)
        for a in range(0, len(self.rows), EXACT_CHUNK_ROWS):
            scores[a : a + EXACT_CHUNK_ROWS] = self.rows[a : a + EXACT_CHUNK_ROWS].astype(np.float32) @ q
        k = min(int(k), len(scores))
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.argsort(-scores[top], kind="stable")]
        return scores[top], top


class IvfIndex:
    """faiss IVF with float16 codes on unit vectors, inner product (= cosine): approximate probing, fast."""

    def __init__(self, index, nprobe: int = DEFAULT_NPROBE) -> None:
        self.index = index
        self.index.nprobe = nprobe

    @classmethod
    def build(cls, vectors: np.ndarray, *, nlist: int | None = None, seed: int = 0) -> IvfIndex:
        """Train the coarse quantiser on a sample and add every row, in chunks (float32 copies stay small)."""
        import faiss

        n, dims = vectors.shape
        nlist = min(n, nlist or max(16, round(math.sqrt(n))))
        quantiser = faiss.IndexFlatIP(dims)
        # Codes are the rows themselves in float16 (not residuals): scores match the exact search's.
        index = faiss.IndexIVFScalarQuantizer(
            quantiser, dims, nlist, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT, False
        )
        rng = np.random.default_rng(seed)
        sample = rng.choice(n, size=min(n, TRAIN_PER_LIST * nlist), replace=False)
        index.train(unit_rows(vectors[np.sort(sample)]).astype(np.float32))
        _add_reserved(index, vectors)
        return cls(index)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) of the k best rows found, best first."""
        q = np.asarray(query, dtype=np.float32).reshape(1, -1)
        scores, rows = self.index.search(q, int(k))
        keep = rows[0] >= 0
        return scores[0][keep], rows[0][keep]

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to one file, atomically."""
        import faiss

        tmp = Path(f"{path}.tmp")
        faiss.write_index(self.index, str(tmp))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> IvfIndex:
        """Read an index written by save()."""
        import faiss

        return cls(faiss.read_index(str(path)))


def _add_reserved(index, vectors: np.ndarray) -> None:
    """Add every row to a trained IVF index, each inverted list allocated once at its final size.

    Lists that grow row by row end up with up to twice the capacity they use (+50% of the index in RSS on a
    million rows); assigning every row to its list first lets each list be reserved exactly.
    """
    import faiss

    assign = np.empty(len(vectors), dtype=np.int64)
    for a in range(0, len(vectors), ADD_CHUNK_ROWS):
        chunk = unit_rows(vectors[a : a + ADD_CHUNK_ROWS]).astype(np.float32)
        assign[a : a + len(chunk)] = index.quantizer.search(chunk, 1)[1][:, 0]
    lists = faiss.downcast_InvertedLists(index.invlists)
    for list_no, size in enumerate(np.bincount(assign, minlength=index.nlist).tolist()):
        lists.resize(list_no, size)  # allocates exactly `size` entries...
        lists.resize(list_no, 0)  # ...and keeps them as capacity
    for a in range(0, len(vectors), ADD_CHUNK_ROWS):
        chunk = unit_rows(vectors[a : a + ADD_CHUNK_ROWS]).astype(np.float32)
        where = np.ascontiguousarray(assign[a : a + len(chunk)])
        index.add_core(len(chunk), faiss.swig_ptr(chunk), None, faiss.swig_ptr(where))


def build_index(vectors: np.ndarray, *, exact_below: int = EXACT_BELOW) -> VectorIndex:
    """Exact search for small sets, an IVF (float16 codes) index from ``exact_below`` rows on."""
    if vectors.ndim != 2 or len(vectors) == 0:
        raise InvalidInputError(f"need a non-empty (rows, dims) array of embeddings, got shape {vectors.shape}")
    return ExactIndex(vectors) if len(vectors) < exact_below else IvfIndex.build(vectors)
