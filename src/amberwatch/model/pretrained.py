"""Recipe `pretrained`: frozen EfficientNet-Lite0 features, a linear head, and a score map per image.

A linear head on average-pooled features is the mean of per-location scores, so every stage's
feature map gives a score map (a class activation map). ``predict_grid`` sums the stage maps on a
grid of ``cell_px`` cells and averages them over a window of ``window_cells`` cells around each
cell: one backbone pass per image scores every window the way a chip of that size would be scored.
"""

from __future__ import annotations

import itertools
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from amberwatch.errors import InvalidInputError, ModelError
from amberwatch.model.backbone import (
    FEATURE_DIM,
    INPUT_MULTIPLE_PX,
    STAGE_CHANNELS,
    STAGE_STRIDES,
    Backbone,
    load_backbone,
)
from amberwatch.model.backbone_onnx import onnx_backbone
from amberwatch.model.classifier import VersionedModel, as_rgb_chip, payload_bytes, write_atomically
from amberwatch.model.dataset import TEXTY_RESOLUTION_M_PER_PX, ChipSet
from amberwatch.model.features import DIHEDRAL_VIEWS, FeatureCache, chip_features, dihedral, rescale


@dataclass(frozen=True)
class PretrainedRecipe:
    """Hyper-parameters of the pretrained recipe (stored in the model's metadata)."""

    scale: float = 1.0  # examples are resized by this factor before the backbone
    jitter_copies: int = 4  # colour-jittered copies per example, besides the 8 flips/rotations
    C: float = 0.03  # inverse L2 strength of the logistic regression (chosen by block CV, RESULTS.md)
    tta: bool = False  # predict_proba averages the 8 flips/rotations (the scan never does)
    cell_px: int = 16  # score-map cell side in working pixels
    window_cells: int = 15  # side of the window scored for each cell (agreement with chips alone, RESULTS.md)
    border_px: int = 32  # a chip's features are averaged over its area less this border (it sees padding)
    halo_px: int = 32  # overlap between the backbone passes that tile a large image
    chunk_px: int = 800  # side of one backbone pass over a large image (fewer halos; ORT is flat per pixel)
    embedding_dims: int = 64  # tile embeddings kept by the scan for similarity search (0: none)
    example_resolution_m_per_px: float = TEXTY_RESOLUTION_M_PER_PX
    feature_cache: str | None = field(default=None, compare=False)  # where chip features are kept
    name: str = "pretrained"

    @property
    def resolution_m_per_px(self) -> float:
        """Ground resolution the backbone works at (the scan resamples imagery to it)."""
        return self.example_resolution_m_per_px / self.scale

    def to_dict(self) -> dict:
        """Plain dict for the model metadata (the cache location is not part of the recipe)."""
        d = asdict(self)
        d.pop("feature_cache")
        return d


@dataclass(frozen=True)
class Embedding:
    """An affine map of pooled backbone features to a compact embedding: e = weight @ f + bias."""

    weight: np.ndarray  # (dims, FEATURE_DIM) float32
    bias: np.ndarray  # (dims,) float32

    @property
    def dims(self) -> int:
        """Values per embedding."""
        return int(self.weight.shape[0])


class PretrainedClassifier(VersionedModel):
    """P(mining) from a frozen backbone and a linear head; same interface as the CNN Classifier."""

    kind = "pretrained"
    block_tiles = 16  # the scan hands over whole units: predict_grid tiles its backbone passes itself

    def __init__(
        self,
        weight: np.ndarray,
        bias: float,
        recipe: PretrainedRecipe,
        *,
        threshold: float = 0.5,
        metadata: dict | None = None,
        backbone: Backbone | None = None,
        embedding: Embedding | None = None,
    ) -> None:
        weight = np.asarray(weight, dtype=np.float32).reshape(-1)
        if weight.shape != (FEATURE_DIM,):
            raise ModelError(f"pretrained head has {weight.size} weights, expected {FEATURE_DIM}")
        self.weight = weight
        self.bias = float(bias)
        self.recipe = recipe
        self.threshold = float(threshold)
        self.metadata: dict = dict(metadata or {})
        self.backbone = backbone if backbone is not None else load_backbone()
        self._fast = None  # the ONNX Runtime twin, made on the first predict_grid
        self.resolution_m_per_px = recipe.resolution_m_per_px
        self.cell_px = recipe.cell_px
        raw = (recipe.window_cells // 2) * recipe.cell_px + recipe.halo_px
        self.context_px = int(-(-raw // INPUT_MULTIPLE_PX) * INPUT_MULTIPLE_PX)
        self.embedding = embedding
        if embedding is not None and embedding.weight.shape[1:] != (FEATURE_DIM,):
            raise ModelError(f"embedding weight has shape {embedding.weight.shape}, expected (dims, {FEATURE_DIM})")
        # Column 0 scores, columns 1.. embed: both are linear in the features, so one pass gives every cell both.
        columns = [self.weight[:, None]] + ([embedding.weight.T] if embedding is not None else [])
        w = torch.from_numpy(np.ascontiguousarray(np.concatenate(columns, axis=1), dtype=np.float32))
        self._stage_w = list(torch.split(w, list(STAGE_CHANNELS)))

    @property
    def embedding_dims(self) -> int:
        """Values per tile embedding (0 when the model has no embedding)."""
        return 0 if self.embedding is None else self.embedding.dims

    # -- chips --------------------------------------------------------------------------------------------
    def logits_from_features(self, features: np.ndarray) -> np.ndarray:
        """(N, FEATURE_DIM) pooled features -> (N,) logits."""
        return np.asarray(features, dtype=np.float32) @ self.weight + self.bias

    def predict_proba(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """Chips HxWx3 (at the examples' resolution, any size) -> (N,) float32 P(mining)."""
        if isinstance(chips, np.ndarray) and chips.ndim == 3:
            raise InvalidInputError(f"predict_proba takes a sequence of chips, got one array of shape {chips.shape}")
        views = range(DIHEDRAL_VIEWS) if self.recipe.tta else [0]
        out = np.zeros(len(chips), dtype=np.float32)
        with torch.inference_mode():
            for i, chip in enumerate(chips):
                arr = rescale(as_rgb_chip(chip, f"chip {i}"), self.recipe.scale)
                x = torch.from_numpy(np.stack([dihedral(arr, v) for v in views])).permute(0, 3, 1, 2).float()
                feats = self.backbone.pooled(x, self.recipe.border_px).mean(dim=0, keepdim=True).numpy()
                out[i] = _sigmoid(self.logits_from_features(feats))[0]
        return out

    def embed_chips(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """Chips HxWx3 -> (N, embedding_dims) float32 embeddings of their pooled features (ModelError without)."""
        if self.embedding is None:
            raise ModelError(f"model v{self.version} has no embedding: retrain it to search for similar places")
        feats = np.zeros((len(chips), FEATURE_DIM), dtype=np.float32)
        with torch.inference_mode():
            for i, chip in enumerate(chips):
                arr = rescale(as_rgb_chip(chip, f"chip {i}"), self.recipe.scale)
                x = torch.from_numpy(arr[None].copy()).permute(0, 3, 1, 2).float()
                feats[i] = self.backbone.pooled(x, self.recipe.border_px).numpy()[0]
        return feats @ self.embedding.weight.T + self.embedding.bias

    # -- images -------------------------------------------------------------------------------------------
    def cell_logit_map(self, image: np.ndarray) -> torch.Tensor:
        """Image HxWx3 (H, W multiples of cell_px) -> (H/cell, W/cell) summed per-cell stage scores, bias excluded."""
        return self.cell_maps(image)[0]

    def cell_maps(self, image: np.ndarray) -> torch.Tensor:
        """Image HxWx3 -> (1 + embedding_dims, H/cell, W/cell): per-cell score sums, then embedding sums (no bias)."""
        arr = as_rgb_chip(image, "image")
        h, w = arr.shape[:2]
        cell, step = self.cell_px, INPUT_MULTIPLE_PX
        if h % cell or w % cell or h == 0 or w == 0:
            raise InvalidInputError(f"predict_grid needs H and W multiples of cell_px={cell}, got {h}x{w}")
        ph, pw = -h % step, -w % step
        if ph or pw:
            arr = np.pad(arr, ((0, ph), (0, pw), (0, 0)), mode="reflect" if min(h, w) > step else "edge")
        H, W = arr.shape[:2]
        x = torch.from_numpy(np.require(arr, requirements=["C", "W"])).permute(2, 0, 1)[None]  # uint8: floats per pass
        out = torch.zeros(len(self._stage_w[0][0]), H // cell, W // cell)
        halo = self.recipe.halo_px
        with torch.inference_mode():
            for y0, y1 in _spans(H, self.recipe.chunk_px):
                for x0, x1 in _spans(W, self.recipe.chunk_px):
                    ya, xa = max(0, y0 - halo), max(0, x0 - halo)
                    yb, xb = min(H, y1 + halo), min(W, x1 + halo)
                    cells = self._cells(x[:, :, ya:yb, xa:xb].float())
                    r0, c0 = (y0 - ya) // cell, (x0 - xa) // cell
                    out[:, y0 // cell : y1 // cell, x0 // cell : x1 // cell] = cells[
                        :, r0 : r0 + (y1 - y0) // cell, c0 : c0 + (x1 - x0) // cell
                    ]
        return out[:, : h // cell, : w // cell]

    def _cells(self, x: torch.Tensor) -> torch.Tensor:
        """Per-cell sums of the stage score (and embedding) maps of one input region (sides multiples of 32)."""
        cell = self.cell_px
        if self._fast is None:
            self._fast = onnx_backbone(self.backbone)
        total = None
        for fmap, wk, stride in zip(self._fast.stage_maps(x), self._stage_w, STAGE_STRIDES):
            score = torch.einsum("nchw,ck->nkhw", fmap, wk)
            if stride < cell:
                score = F.avg_pool2d(score, cell // stride)
            elif stride > cell:
                score = score.repeat_interleave(stride // cell, dim=2).repeat_interleave(stride // cell, dim=3)
            total = score if total is None else total + score
        return total[0]

    def predict_grid(self, image: np.ndarray) -> np.ndarray:
        """Image HxWx3 uint8 (at resolution_m_per_px; H, W multiples of cell_px) -> P(mining) per cell window."""
        return self.grid_and_cell_embeddings(image)[0]

    def grid_and_cell_embeddings(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """predict_grid's P(mining) per cell, and the (dims, H/cell, W/cell) per-cell embedding sums (or None)."""
        maps = self.cell_maps(image)
        k = self.recipe.window_cells
        window = F.avg_pool2d(maps[None, :1], k, stride=1, padding=k // 2, count_include_pad=False)[0, 0]
        probs = torch.sigmoid(window + self.bias).numpy().astype(np.float32)
        return probs, (maps[1:].numpy() if self.embedding is not None else None)

    def tile_embedding(self, cell_embeddings: np.ndarray, row: int, col: int, cells: int) -> bytes:
        """float16 bytes of a tile's embedding: the mean of its cells' sums from grid_and_cell_embeddings, plus bias."""
        block = cell_embeddings[:, row : row + cells, col : col + cells]
        return (block.mean(axis=(1, 2)) + self.embedding.bias).astype(np.float16).tobytes()

    # -- file format --------------------------------------------------------------------------------------
    def payload(self) -> dict:
        """The model-file payload: head, recipe, backbone identity, threshold and metadata (no backbone weights)."""
        return {
            "kind": self.kind,
            "backbone": self.backbone.identity,
            "head_weight": torch.from_numpy(self.weight.copy()),
            "head_bias": self.bias,
            "recipe": self.recipe.to_dict(),
            "threshold": self.threshold,
            "resolution_m_per_px": self.resolution_m_per_px,
            "metadata": self.metadata,
            **(
                {
                    "embed_weight": torch.from_numpy(self.embedding.weight.copy()),
                    "embed_bias": torch.from_numpy(self.embedding.bias.copy()),
                }
                if self.embedding is not None
                else {}
            ),
        }

    @classmethod
    def from_payload(cls, payload: dict, name: str) -> PretrainedClassifier:
        """Inverse of payload; the installed backbone must be the one the head was trained on."""
        backbone = load_backbone()
        stored = payload["backbone"]
        if stored.get("sha256") != backbone.digest:
            raise ModelError(
                f"{name}: trained on backbone {stored.get('name')} with weights sha256 "
                f"{str(stored.get('sha256'))[:16]}..., but the installed weights are {backbone.digest[:16]}..."
            )
        recipe = PretrainedRecipe(**{k: v for k, v in payload["recipe"].items() if k != "name"})
        return cls(
            np.asarray(payload["head_weight"]),
            float(payload["head_bias"]),
            recipe,
            threshold=float(payload["threshold"]),
            metadata=dict(payload.get("metadata") or {}),
            backbone=backbone,
            embedding=(
                Embedding(
                    np.asarray(payload["embed_weight"], dtype=np.float32),
                    np.asarray(payload["embed_bias"], dtype=np.float32),
                )
                if "embed_weight" in payload
                else None
            ),
        )

    def to_bytes(self) -> bytes:
        """Serialise to the single-file model format."""
        return payload_bytes(self.payload())

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model to ONE file, atomically."""
        write_atomically(path, self.to_bytes())


def _spans(size_px: int, chunk_px: int) -> list[tuple[int, int]]:
    """Split 0..size_px (a multiple of 32) into near-equal spans of at most ~chunk_px, each a multiple of 32."""
    step = INPUT_MULTIPLE_PX
    n = max(1, -(-size_px // chunk_px))
    bounds = [min(size_px, round(size_px * i / n / step) * step) for i in range(n + 1)]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


# -- training ---------------------------------------------------------------------------------------------
def data_features(
    data: ChipSet, recipe: PretrainedRecipe, log: Callable[[str], None] | None = None, stats: dict | None = None
) -> np.ndarray:
    """(N, views, FEATURE_DIM) features of every example, through the recipe's feature cache (and kept on data)."""
    key = ("features", recipe.scale, recipe.jitter_copies, recipe.border_px)
    if key in data.extra:
        return data.extra[key]
    cache = FeatureCache(recipe.feature_cache) if recipe.feature_cache else None
    try:
        feats = chip_features(
            load_backbone(),
            data.chips,
            scale=recipe.scale,
            jitter_copies=recipe.jitter_copies,
            border_px=recipe.border_px,
            cache=cache,
            log=log,
            stats=stats,
        )
    finally:
        if cache is not None:
            cache.close()
    data.extra[key] = feats
    return feats


def fit_head(features: np.ndarray, labels: np.ndarray, recipe: PretrainedRecipe) -> tuple[np.ndarray, float]:
    """Standardise + balanced logistic regression on every view's row; folded to one (weight, bias)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels)
    if len(labels) == 0 or labels.min() == labels.max():
        raise ModelError(f"training needs examples of both labels, got {int(labels.sum())} mining of {len(labels)}")
    x = features.reshape(-1, features.shape[-1])
    y = np.repeat(labels, features.shape[1])
    scaler = StandardScaler().fit(x)
    lr = LogisticRegression(C=recipe.C, class_weight="balanced", max_iter=3000).fit(scaler.transform(x), y)
    weight = lr.coef_[0] / scaler.scale_
    bias = float(lr.intercept_[0] - np.sum(lr.coef_[0] * scaler.mean_ / scaler.scale_))
    return weight.astype(np.float32), bias


def test_features(features: np.ndarray, recipe: PretrainedRecipe) -> np.ndarray:
    """The features a chip is scored with: view 0, or the mean of the 8 flips/rotations with tta."""
    return features[:, :DIHEDRAL_VIEWS].mean(axis=1) if recipe.tta else features[:, 0]


def fit(data: ChipSet, recipe: PretrainedRecipe, log: Callable[[str], None] | None = None) -> PretrainedClassifier:
    """Train the head (and the embedding) on all of data -> PretrainedClassifier at threshold 0.5."""
    features = data_features(data, recipe, log)
    weight, bias = fit_head(features, data.labels, recipe)
    embedding = (
        fit_embedding(features, data.labels, weight, bias, recipe.embedding_dims) if recipe.embedding_dims else None
    )
    return PretrainedClassifier(weight, bias, recipe, embedding=embedding)


def fit_embedding(features: np.ndarray, labels: np.ndarray, weight: np.ndarray, bias: float, dims: int) -> Embedding:
    """PLS directions of the standardised features plus the head's logit (weight 2): the tile embedding.

    Leave-one-block-out retrieval on the Texty crops chose it (RESULTS.md): dims - 1 PLS components of the
    standardised features, each row scaled to a median norm of 1, and the head's logit scaled to standard
    deviation 2. Every step is affine, so the scan computes it per location and pools it per tile.
    """
    from sklearn.cross_decomposition import PLSRegression

    x = features.reshape(-1, features.shape[-1]).astype(np.float64)
    y = np.repeat(np.asarray(labels, dtype=np.float64), features.shape[1])
    mu, sd = x.mean(axis=0), x.std(axis=0)
    sd[sd == 0] = 1.0
    z = (x - mu) / sd
    with warnings.catch_warnings():
        # A small training set is explained before the last components: they come out degenerate, not wrong.
        warnings.filterwarnings("ignore", message="y residual is constant")
        pls = PLSRegression(n_components=dims - 1, scale=False).fit(z, y)
    rot, centre = pls.x_rotations_, z.mean(axis=0)
    spread = float(np.median(np.linalg.norm((z - centre) @ rot, axis=1))) or 1.0
    logit_sd = float(np.std(x @ weight + bias)) or 1.0
    a = np.vstack([(rot.T / sd[None, :]) / spread, 2.0 * weight[None, :] / logit_sd])
    b = np.concatenate([-(rot.T @ (mu / sd + centre)) / spread, [2.0 * bias / logit_sd]])
    return Embedding(a.astype(np.float32), b.astype(np.float32))


def cross_validate(
    data: ChipSet,
    recipe: PretrainedRecipe,
    folds: np.ndarray,
    log: Callable[[str], None] | None = None,
    train_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Out-of-fold P(mining) for every example on the given folds (features computed once, cached)."""
    t0 = time.perf_counter()
    feats = data_features(data, recipe, log)
    allowed = np.ones(len(data), dtype=bool) if train_mask is None else train_mask
    oof = np.zeros(len(data), dtype=np.float32)
    for k in range(int(folds.max()) + 1):
        train = (folds != k) & allowed
        test = folds == k
        weight, bias = fit_head(feats[train], data.labels[train], recipe)
        oof[test] = _sigmoid(test_features(feats[test], recipe) @ weight + bias)
    if log:
        log(f"cross-validation: {int(folds.max()) + 1} heads in {time.perf_counter() - t0:.1f} s")
    return oof
