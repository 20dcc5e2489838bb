"""Recipe `pretrained`: frozen EfficientNet-Lite0 features, a small head, and a score map per image.

A chip's features are each stage channel's mean over the chip and, for the stages in ``feature_std_stages``,
its standard deviation. The head's first layer is linear in them (``model.head``). On the means it is the
mean of per-location values, so every stage's feature map gives maps of the first layer (for a linear head,
a class activation map); the standard deviations come from window means of x and x^2. ``predict_grid`` keeps
the first layer's values per cell of ``cell_px`` and the moments on each stage's grid (the cells', or stage 7's,
twice as coarse), averages them over a window of ``window_cells`` cells around each cell, and applies the rest of
the head per window: one backbone pass per image scores every window the way a chip of that size would be scored.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np
import torch
import torch.nn.functional as F

from amberwatch.errors import InvalidInputError, ModelError, ModelFallbackWarning
from amberwatch.model.backbone import (
    FEATURE_DIM,
    INPUT_MULTIPLE_PX,
    STAGE_CHANNELS,
    STAGE_STRIDES,
    Backbone,
    load_backbone,
    pool_maps,
)
from amberwatch.model.backbone_onnx import QUANTIZATION, OnnxBackbone, int8_ranges, onnx_backbone
from amberwatch.model.classifier import ScanPass, VersionedModel, as_rgb_chip, payload_bytes, write_atomically
from amberwatch.model.dataset import TEXTY_RESOLUTION_M_PER_PX, ChipSet
from amberwatch.model.features import DIHEDRAL_VIEWS, FeatureCache, chip_features, dihedral, prep_key, rescale
from amberwatch.model.head import HEADS, Head, MlpSettings, blend_heads, fit_linear, fit_mlp_parts
from amberwatch.model.int8_check import CHECK_CHIPS, Int8Check, mean_abs_dlogit
from amberwatch.model.int8_correction import SLOT_PX, WINDOW_STRIDE_CELLS, calibration_mosaic, fit_correction
from amberwatch.model.limits import check_limits
from amberwatch.model.processes import map_in_processes
from amberwatch.model.windows import box_mean, box_mean_2x, inner_cells

_CHANNEL_CHUNK = 128  # channels per window-mean call in a scan: bounds the temporaries of a large image
# What a scan can run with: (lowest, highest) of each number in a recipe (a model file's recipe is checked on load).
RECIPE_LIMITS: dict[str, tuple[float, float]] = {
    "scale": (0.05, 20.0),
    "jitter_copies": (0, 64),
    "C": (1e-9, 1e9),
    "cell_px": (8, 256),
    "window_cells": (1, 255),
    "border_px": (0, 1024),
    "halo_px": (0, 1024),
    "chunk_px": (INPUT_MULTIPLE_PX, 8192),
    "embedding_dims": (0, 1024),
    "example_resolution_m_per_px": (1e-3, 1e3),
}


@dataclass(frozen=True)
class PretrainedRecipe:
    """Hyper-parameters of the pretrained recipe (stored in the model's metadata)."""

    scale: float = 1.0  # examples are resized by this factor before the backbone
    jitter_copies: int = 4  # colour-jittered copies per example, besides the 8 flips/rotations
    head: str = "mlp"  # 'mlp' (2 x 64 ReLU units per part, logits averaged) or 'linear' (logistic regression)
    C: float = 0.1  # inverse L2 strength of the linear head's logistic regression (chosen by block CV, RESULTS.md)
    # Stages (indices into STAGE_CHANNELS) whose channels' standard deviations join the means: stages 3 and 5.
    std_stages: tuple[int, ...] = (0, 1)
    # A second MLP also takes these deeper stages' deviations (stage 7); its logits weigh wide_weight in the head's
    # average. Alone they score higher on chips but pull the score map away from windows classified alone; blended,
    # block CV and the agreement both hold (RESULTS.md round 8). The linear head has none.
    wide_std_stages: tuple[int, ...] = (3,)
    wide_weight: float = 0.35
    int8: bool = True  # fit calibrates int8 ranges, so scans run a quantized backbone (2x faster; scan --fp32 not)
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

    def __post_init__(self) -> None:
        check_limits("recipe", vars(self), RECIPE_LIMITS)
        if self.cell_px & (self.cell_px - 1):  # stage maps are pooled to cells and coarse ones repeated on them
            raise InvalidInputError(f"recipe cell_px must be a power of two, got {self.cell_px}")
        if self.head not in HEADS:
            raise InvalidInputError(f"unknown head {self.head!r} (expected one of {', '.join(HEADS)})")
        if any(STAGE_STRIDES[s] > self.cell_px for s in self.feature_std_stages) and self.window_cells % 4 != 3:
            raise InvalidInputError(  # box_mean_2x's rule for stages coarser than the cells
                f"window_cells must be 3 mod 4 with deviations of stages coarser than a cell, got {self.window_cells}"
            )
        if self.halo_px % INPUT_MULTIPLE_PX:  # the coarsest stage's moments are written per pass on its own grid
            raise InvalidInputError(f"halo_px must be a multiple of {INPUT_MULTIPLE_PX}, got {self.halo_px}")
        if self.wide_std_stages and (self.head != "mlp" or not 0 < self.wide_weight <= 1):
            raise InvalidInputError(
                f"wide_std_stages {self.wide_std_stages} need the mlp head and 0 < wide_weight <= 1, "
                f"got head {self.head!r} and wide_weight {self.wide_weight}"
            )

    @property
    def feature_std_stages(self) -> tuple[int, ...]:
        """Stages whose deviations the features hold: the head's and its wide part's, in stage order."""
        return tuple(sorted(set(self.std_stages) | set(self.wide_std_stages)))

    @property
    def n_features(self) -> int:
        """Features of one window (or chip) the head takes: every channel's mean, then the std stages' deviations."""
        return FEATURE_DIM + len(std_columns(self.feature_std_stages))

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
class Int8Calibration:
    """What rebuilds a model's int8 backbone in any process, and checks it: activation ranges, the mean logit shift
    they cause, and a few calibration chips with how far int8 was from fp32 on them where it was calibrated."""

    ranges: dict[str, list[float]]  # ONNX tensor -> [min, max] (MinMax calibration on training chips)
    # Mean (int8 - fp32) logit taken off the scan's logits: on the calibration chips, or with logit_weights the
    # mean over the windows the correction was fitted on.
    logit_shift: float
    chips: int = 0
    quantization: str = "u8s8-w8"  # how the shift was measured (files before QUANTIZATION: 8-bit weights)
    check_dlogit: float | None = None  # mean |int8 - fp32| logit on check_images where it was calibrated
    check_images: tuple[np.ndarray, ...] = field(default=(), compare=False, repr=False)  # HxWx3 uint8 chips
    # The int8 logit correction (model.int8_correction): logit_shift + (x - logit_centre) @ logit_weights is taken
    # off the int8 logit of features x. Files without it take off logit_shift alone.
    logit_weights: np.ndarray | None = field(default=None, compare=False, repr=False)  # (features,) float32
    logit_centre: np.ndarray | None = field(default=None, compare=False, repr=False)  # (features,) float32

    def to_payload(self) -> dict:
        """Model-file entries: plain values, the check chips and the correction's vectors as tensors."""
        arrays = ("check_images", "logit_weights", "logit_centre")
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in arrays}
        d["check_images"] = [torch.from_numpy(np.ascontiguousarray(im)) for im in self.check_images]
        if self.logit_weights is not None:
            d["logit_weights"] = torch.from_numpy(np.asarray(self.logit_weights, dtype=np.float32).copy())
            d["logit_centre"] = torch.from_numpy(np.asarray(self.logit_centre, dtype=np.float32).copy())
        return d

    @classmethod
    def from_payload(cls, d: dict) -> Int8Calibration:
        """Inverse of to_payload; files before the check have no check chips, before the correction no weights."""
        out = {k: v for k, v in d.items() if k not in ("logit_weights", "logit_centre")}
        out["check_images"] = tuple(np.asarray(t, dtype=np.uint8) for t in d.get("check_images", ()))
        if "logit_weights" in d:
            out["logit_weights"] = np.asarray(d["logit_weights"], dtype=np.float32)
            out["logit_centre"] = np.asarray(d["logit_centre"], dtype=np.float32)
        return cls(**out)

    @property
    def offset(self) -> float:
        """The constant part of the correction: logit_shift, less logit_centre @ logit_weights when there are any."""
        if self.logit_weights is None:
            return self.logit_shift
        return self.logit_shift - float(np.dot(self.logit_centre.astype(np.float64), self.logit_weights))

    def correction(self, int8_features: np.ndarray) -> float | np.ndarray:
        """What is taken off the int8 logits of (N, features) int8 pooled features: logit_shift without weights."""
        if self.logit_weights is None:
            return self.logit_shift
        return self.offset + np.asarray(int8_features, dtype=np.float64) @ self.logit_weights.astype(np.float64)


@dataclass(frozen=True)
class Embedding:
    """A compact embedding: e = weight @ mean features + bias, then the head's logit x logit_scale if > 0."""

    weight: np.ndarray  # (rows, FEATURE_DIM) float32, applied to the mean features
    bias: np.ndarray  # (rows,) float32
    logit_scale: float = 0.0  # 0: no logit value (files before std features had it as an affine row)

    @property
    def dims(self) -> int:
        """Values per embedding."""
        return int(self.weight.shape[0]) + (1 if self.logit_scale else 0)

    def of(self, mean_features: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """(N, dims) embeddings of pooled mean features and the head's logits."""
        e = mean_features @ self.weight.T + self.bias
        return np.concatenate([e, self.logit_scale * logits[:, None]], axis=1) if self.logit_scale else e


class PretrainedClassifier(VersionedModel):
    """P(mining) from a frozen backbone and a head on pooled features; same interface as the CNN Classifier."""

    kind = "pretrained"
    block_tiles = 16  # the scan caps it at 8 (blocks never straddle units): predict_grid tiles its passes itself

    def __init__(
        self,
        head: Head,
        recipe: PretrainedRecipe,
        *,
        threshold: float = 0.5,
        metadata: dict | None = None,
        backbone: Backbone | None = None,
        embedding: Embedding | None = None,
        int8: Int8Calibration | None = None,
    ) -> None:
        n_features = recipe.n_features
        if head.n_features != n_features:
            raise ModelError(f"pretrained head takes {head.n_features} features, expected {n_features}")
        self.head = head
        self.recipe = recipe
        self.threshold = float(threshold)
        self.metadata: dict = dict(metadata or {})
        self.backbone = backbone if backbone is not None else load_backbone()
        self._fast = None  # the ONNX Runtime twin, made on the first predict_grid
        self.int8 = int8
        self.use_int8 = False  # score maps through the int8 backbone (needs int8 ranges): faster, slightly noisier
        self._int8_check: Int8Check | None = None
        self.resolution_m_per_px = recipe.resolution_m_per_px
        self.cell_px = recipe.cell_px
        raw = (recipe.window_cells // 2) * recipe.cell_px + recipe.halo_px
        self.context_px = int(-(-raw // INPUT_MULTIPLE_PX) * INPUT_MULTIPLE_PX)
        self.embedding = embedding
        if embedding is not None and embedding.weight.shape[1:] != (FEATURE_DIM,):
            raise ModelError(f"embedding weight has shape {embedding.weight.shape}, expected (dims, {FEATURE_DIM})")
        weights = None if int8 is None else int8.logit_weights
        if weights is not None and weights.shape != (n_features,):
            raise ModelError(f"int8 logit correction has shape {weights.shape}, expected ({n_features},)")
        self._set_first_layer(False)

    def _set_first_layer(self, int8: bool) -> None:
        """The scan's weights: the head's first layer (in an int8 scan, then the int8 correction's row) on the means,
        then the embedding's rows, all linear, so one pass gives every cell all of them; and the std blocks."""
        first = self.head.hidden_w
        if int8 and self.int8 is not None and self.int8.logit_weights is not None:
            first = np.concatenate([first, self.int8.logit_weights[None].astype(np.float32)])
        self._rows = len(first)  # first-layer rows of the per-cell maps (the head's, and the correction's)
        extra = [self.embedding.weight.T] if self.embedding is not None else []
        w = np.ascontiguousarray(np.concatenate([first[:, :FEATURE_DIM].T, *extra], axis=1), dtype=np.float32)
        self._stage_w = list(torch.split(torch.from_numpy(w), list(STAGE_CHANNELS)))
        self._std_blocks = _std_blocks(first[:, FEATURE_DIM:], self.recipe.feature_std_stages, self.cell_px)

    @property
    def embedding_dims(self) -> int:
        """Values per tile embedding (0 when the model has no embedding)."""
        return 0 if self.embedding is None else self.embedding.dims

    # -- chips --------------------------------------------------------------------------------------------
    def logits_from_features(self, features: np.ndarray) -> np.ndarray:
        """(N, n_features) pooled features -> (N,) logits."""
        return self.head.logits(features)

    def pooled_features(self, x: torch.Tensor) -> np.ndarray:
        """Float NCHW 0..255 chips (already rescaled) -> (N, n_features) features the head takes."""
        feats = self.backbone.pooled(x, self.recipe.border_px, with_std=bool(self.recipe.feature_std_stages)).numpy()
        return select_features(feats, self.recipe.feature_std_stages)

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
                feats = self.pooled_features(x).mean(axis=0, keepdims=True)
                out[i] = _sigmoid(self.logits_from_features(feats))[0]
        return out

    def embed_chips(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """Chips HxWx3 -> (N, embedding_dims) float32 embeddings of their pooled features (ModelError without)."""
        if self.embedding is None:
            raise ModelError(f"model v{self.version} has no embedding: retrain it to search for similar places")
        feats = np.zeros((len(chips), self.head.n_features), dtype=np.float32)
        with torch.inference_mode():
            for i, chip in enumerate(chips):
                arr = rescale(as_rgb_chip(chip, f"chip {i}"), self.recipe.scale)
                x = torch.from_numpy(arr[None].copy()).permute(0, 3, 1, 2).float()
                feats[i] = self.pooled_features(x)[0]
        return self.embedding.of(feats[:, :FEATURE_DIM], self.logits_from_features(feats))

    # -- images -------------------------------------------------------------------------------------------
    def cell_logit_map(self, image: np.ndarray) -> torch.Tensor:
        """Image HxWx3 (H, W multiples of cell_px) -> (hidden, H/cell, W/cell) first-layer values of the per-cell
        means, biases excluded (a linear head's row is its class activation map)."""
        return self.cell_maps(image, moments=False)[0][: self.head.hidden]

    def cell_maps(
        self, image: np.ndarray, moments: bool = True, passes: list[ScanPass] | None = None
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Image HxWx3 -> per-cell maps (C, H/cell, W/cell), bias excluded, and the std stages' moments.

        The maps hold the head's first-layer rows applied to the mean features, then the embedding's rows. The
        moments are, per grid (cell_px, or a coarser stage's stride), the means of x and then of x^2 of every
        channel of the std stages on that grid: coarse stages stay coarse, a quarter of the memory or less (none
        when moments is False). With ``passes`` (some of scan_passes') only their cells are computed, zeros elsewhere.
        """
        arr = as_rgb_chip(image, "image")
        h, w = arr.shape[:2]
        cell, step = self.cell_px, INPUT_MULTIPLE_PX
        if h % cell or w % cell or h == 0 or w == 0:
            raise InvalidInputError(f"predict_grid needs H and W multiples of cell_px={cell}, got {h}x{w}")
        ph, pw = -h % step, -w % step
        if ph or pw:
            arr = np.pad(arr, ((0, ph), (0, pw), (0, 0)), mode="reflect" if min(h, w) > step else "edge")
        H, W = arr.shape[:2]
        new = torch.empty if passes is None else torch.zeros  # all passes write every cell
        out = new(len(self._stage_w[0][0]), H // cell, W // cell)
        on_grid: dict[int, int] = {}
        for block in self._std_blocks if moments else []:
            on_grid[block.grid] = max(on_grid.get(block.grid, 0), 2 * block.moments[1])
        by_grid = {g: new(c, H // g, W // g) for g, c in on_grid.items()}
        with torch.inference_mode():
            for one in self.scan_passes(H, W) if passes is None else passes:
                (y0, y1, x0, x1), (ya, yb, xa, xb) = one.writes, one.reads
                total, parts = self._cells(arr[ya:yb, xa:xb], moments, (y0 - ya, y1 - ya, x0 - xa, x1 - xa))
                out[:, y0 // cell : y1 // cell, x0 // cell : x1 // cell] = total
                for g, grid_parts in parts.items():  # written straight in: no concatenated copy of the parts
                    target, start = by_grid[g][:, y0 // g : y1 // g, x0 // g : x1 // g], 0
                    for part in grid_parts:
                        target[start : start + len(part)] = part
                        start += len(part)
        return out[:, : h // cell, : w // cell], by_grid

    def scan_passes(self, h_px: int, w_px: int) -> list[ScanPass]:
        """The backbone passes cell_maps makes over an image of h_px x w_px (padded to multiples of 32), in order:
        near-equal chunks of at most ~chunk_px, each reading a halo of halo_px around it."""
        step, halo, chunk = INPUT_MULTIPLE_PX, self.recipe.halo_px, self.recipe.chunk_px
        H, W = h_px + -h_px % step, w_px + -w_px % step
        return [
            ScanPass((y0, y1, x0, x1), (max(0, y0 - halo), min(H, y1 + halo), max(0, x0 - halo), min(W, x1 + halo)))
            for y0, y1 in _spans(H, chunk)
            for x0, x1 in _spans(W, chunk)
        ]

    def passes_for(self, h_px: int, w_px: int, margin_cells: int, wanted: np.ndarray | None) -> list[ScanPass]:
        """The passes of scan_passes whose cells the windows of the ``wanted`` cells (bool, the cells at least
        margin_cells from the edges; None: all) take in: computed alone, those cells score as in the whole map."""
        every = self.scan_passes(h_px, w_px)
        if wanted is None or wanted.all():
            return every
        cell, r, m = self.cell_px, self.recipe.window_cells // 2, margin_cells
        kept = []
        for one in every:  # the wanted cells whose windows reach into this pass's cells
            y0, y1, x0, x1 = (max(0, v // cell - m + d) for v, d in zip(one.writes, (-r, r, -r, r), strict=True))
            if wanted[y0:y1, x0:x1].any():
                kept.append(one)
        return kept

    def _cells(
        self, pixels: np.ndarray, moments: bool, keep: tuple[int, int, int, int]
    ) -> tuple[torch.Tensor, dict[int, list[torch.Tensor]]]:
        """cell_maps' first-layer rows for one HxWx3 region (sides multiples of 32), and per grid the moments'
        parts to stack in this order (every x, then every x^2), all on the rows top..bottom and columns
        left..right (px, multiples of 32) of keep: the halo around them only feeds the backbone."""
        if self._fast is None:
            self._fast = self._scan_backbone()
        by_grid: dict[int, tuple[torch.Tensor, tuple]] = {}  # summed stage scores (C, h*w) on each stage grid
        firsts: dict[int, list[torch.Tensor]] = {}
        seconds: dict[int, list[torch.Tensor]] = {}
        top, bottom, left, right = keep
        maps = self._fast.pixel_stage_maps(pixels)
        for stage, (fmap, wk, stride) in enumerate(zip(maps, self._stage_w, STAGE_STRIDES)):
            fmap = fmap[0, :, top // stride : bottom // stride, left // stride : right // stride]
            # Scoring is linear per location, so a fine map is pooled to cells before its weights are applied.
            pooled = self._pool_fine(fmap, stride)
            grid = max(stride, self.cell_px)
            flat = pooled.reshape(len(wk), -1)
            if grid in by_grid:
                by_grid[grid][0].addmm_(wk.T, flat)
            else:
                by_grid[grid] = (wk.T @ flat, tuple(pooled.shape[1:]))
            if moments and stage in self.recipe.feature_std_stages:
                firsts.setdefault(grid, []).append(pooled)
                seconds.setdefault(grid, []).append(self._pool_fine(fmap * fmap, stride))
        total = None
        for grid, (flat, shape) in sorted(by_grid.items()):
            score = flat.reshape(-1, *shape)
            if total is None:
                total = self._to_cells(score, grid)
            else:  # a coarser grid added to every cell it covers, without a repeated copy
                n = grid // self.cell_px
                total.view(len(total), shape[0], n, shape[1], n).add_(score[:, :, None, :, None])
        return total, {g: firsts[g] + seconds[g] for g in firsts}

    @property
    def has_int8(self) -> bool:
        """Whether the model carries int8 ranges (the scan then uses the int8 backbone unless told --fp32)."""
        return self.int8 is not None

    def set_int8(self, on: bool) -> None:
        """Score maps through the int8 backbone (ModelError if the model has no int8 ranges) or the fp32 one."""
        if on and self.int8 is None:
            raise ModelError(f"model v{self.version} has no int8 calibration: retrain it to scan with --int8")
        self.use_int8, self._fast = bool(on), None
        self._set_first_layer(self.use_int8)

    def check_int8(self) -> Int8Check:
        """int8 against fp32 on this CPU, on the check chips the model file carries (measured once per model)."""
        if self.int8 is None:
            raise ModelError(f"model v{self.version} has no int8 calibration: retrain it to scan with --int8")
        if self._int8_check is None:
            self._int8_check = self._measure_int8()
        return self._int8_check

    def _measure_int8(self) -> Int8Check:
        cal = self.int8
        if cal.quantization != QUANTIZATION or not cal.check_images or cal.check_dlogit is None:
            why = f"model v{self.version} has no int8 check chips for {QUANTIZATION}: retrain it"
            return Int8Check(0, None, cal.check_dlogit, why)
        try:
            sessions = [onnx_backbone(self.backbone), onnx_backbone(self.backbone, cal.ranges)]
        except Exception as exc:  # a different torch/onnx/ORT version may export other tensor names
            return Int8Check(0, None, cal.check_dlogit, f"int8 backbone unavailable ({exc})")
        with_std = bool(self.recipe.feature_std_stages)
        pairs = [_twin_features(im, sessions, self.recipe.border_px, with_std) for im in cal.check_images]
        fp32, int8 = (select_features(np.stack(side), self.recipe.feature_std_stages) for side in zip(*pairs))
        here = mean_abs_dlogit(self.head.logits(fp32), self.head.logits(int8), cal.correction(int8))
        return Int8Check(len(pairs), here, cal.check_dlogit)

    def _scan_backbone(self) -> OnnxBackbone:
        """The int8 twin when asked for, else the fp32 one; ModelError when int8 was asked for and cannot be built
        here (a scan chooses its precision once, before it starts: a worker never scores fp32 in an int8 scan)."""
        if self.use_int8 and self.int8 is not None:
            try:
                return onnx_backbone(self.backbone, self.int8.ranges)
            except Exception as exc:  # a different torch/onnx/ORT version may export other tensor names
                raise ModelError(
                    f"model v{self.version}: int8 backbone unavailable here ({type(exc).__name__}: {exc}); "
                    "this scan's precision is int8, so nothing is scored in fp32: run it with --fp32"
                ) from exc
        return onnx_backbone(self.backbone)

    def _pool_fine(self, fmap: torch.Tensor, stride: int) -> torch.Tensor:
        """A (C, h, w) map at a stride finer than the cells -> its cell means; coarser maps as they are."""
        return F.avg_pool2d(fmap, self.cell_px // stride) if stride < self.cell_px else fmap

    def _to_cells(self, fmap: torch.Tensor, grid: int) -> torch.Tensor:
        """A (C, h, w) map on a grid of `grid` px, no finer than the cells -> the cell grid (coarse cells repeated)."""
        if grid > self.cell_px:
            n = grid // self.cell_px
            return fmap.repeat_interleave(n, dim=1).repeat_interleave(n, dim=2)
        return fmap

    def _add_std_part(
        self, z: torch.Tensor, moments: dict[int, torch.Tensor], k: int, size: tuple[int, int], margin: int
    ) -> None:
        """Add the std features' part of every window's first layer to z (hidden, h, w), from the moments on each
        stage's grid, a chunk of channels at a time (their window means are the largest temporaries); a grid's
        moments are dropped from the dict once used."""
        last = {block.grid: i for i, block in enumerate(self._std_blocks)}
        for i, block in enumerate(self._std_blocks):
            on_grid, (a, b), rows = moments[block.grid], block.moments, block.rows
            n, target = len(on_grid) // 2, z[rows].reshape(rows.stop - rows.start, z.shape[1] * z.shape[2])
            for c0 in range(a if rows.stop > rows.start else b, b, _CHANNEL_CHUNK):  # no row weighs it: nothing
                c1 = min(b, c0 + _CHANNEL_CHUNK)
                # box_mean sums in double precision, so E[x^2] - E[x]^2 needs no centring: logits within ~2e-5 of
                # float64 on imagery (1.5e-3 on a flat single-colour image, where the variance is all rounding).
                var, mean = (
                    self._window_means(on_grid[c : c + c1 - c0], block.grid, k, size, margin) for c in (n + c0, c0)
                )
                var -= mean * mean
                std = var.clamp_(min=0).sqrt_()
                target.addmm_(block.weight[:, c0 - a : c1 - a], std.view(c1 - c0, -1))
            if last[block.grid] == i:
                del moments[block.grid], on_grid

    def _window_means(self, maps: torch.Tensor, grid: int, k: int, size: tuple[int, int], margin: int) -> torch.Tensor:
        """Float32 window means on the cell grid (size cells, less the margin) of maps on a grid of `grid` px (the
        cells', or twice as coarse)."""
        if grid == self.cell_px:
            return box_mean(maps[:, : size[0], : size[1]], k, torch.float32, margin)
        return box_mean_2x(maps, k, size, torch.float32, margin)

    def predict_grid(self, image: np.ndarray) -> np.ndarray:
        """Image HxWx3 uint8 (at resolution_m_per_px; H, W multiples of cell_px) -> P(mining) per cell window."""
        return self.grid_and_cell_embeddings(image)[0]

    def grid_and_cell_embeddings(
        self, image: np.ndarray, margin_cells: int = 0, passes: list[ScanPass] | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """predict_grid's P(mining) per cell, and the (dims, H/cell, W/cell) per-cell embedding values (or None),
        both for the cells at least margin_cells from the image's edges only (a scan's context is not scored); with
        ``passes`` (passes_for's) only the cells they were chosen for are meaningful."""
        z, cells = self._first_layer(image, margin_cells, passes)
        head = self.head
        shift = self.int8.offset if self._fast.int8 else 0.0  # cell_maps made _fast
        # An int8 scan's correction row is linear in the window's features: taken off the logit, outside the ReLU.
        z, correction = (z[: head.hidden], z[head.hidden]) if len(z) > head.hidden else (z, None)
        if head.relu:
            z.clamp_(min=0)
        logits = torch.einsum("jhw,j->hw", z, torch.from_numpy(head.out_w)) + (head.out_b - shift)
        if correction is not None:
            logits -= correction
        probs = torch.sigmoid(logits).numpy().astype(np.float32)
        if self.embedding is None or cells is None:
            return probs, None
        cells = cells.numpy()
        if self.embedding.logit_scale:  # each cell's window logit stands for the tile's when averaged over it
            cells = np.concatenate([cells, self.embedding.logit_scale * logits.numpy()[None]])
        return probs, cells

    def _first_layer(
        self, image: np.ndarray, margin_cells: int, passes: list[ScanPass] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The first layer's rows (the head's, biases added, then an int8 scan's correction row) of every window at
        least margin_cells from the image's edges, and those cells' per-cell embedding values (or None)."""
        maps, moments = self.cell_maps(image, passes=passes)
        k, m, n = self.recipe.window_cells, margin_cells, self._rows
        h, w = maps.shape[1:]
        inner_cells(h, w, m)  # a named error before any work
        z = torch.empty(n, h - 2 * m, w - 2 * m)
        for c0 in range(0, n, _CHANNEL_CHUNK):
            z[c0 : c0 + _CHANNEL_CHUNK] = box_mean(maps[c0 : min(n, c0 + _CHANNEL_CHUNK)], k, torch.float32, m)
        z[: self.head.hidden] += torch.from_numpy(self.head.hidden_b)[:, None, None]
        cells = maps[n : len(self._stage_w[0][0]), m : h - m, m : w - m].clone() if self.embedding is not None else None
        del maps  # the first layer's maps are in z now: freed before the deviations' temporaries
        if self.recipe.feature_std_stages:
            self._add_std_part(z, moments, k, (h, w), m)
        return z, cells

    def tile_embedding(self, cell_embeddings: np.ndarray, row: int, col: int, cells: int) -> bytes:
        """float16 bytes of a tile's embedding: the mean of its cells' values from grid_and_cell_embeddings + bias."""
        block = cell_embeddings[:, row : row + cells, col : col + cells].mean(axis=(1, 2))
        block[: len(self.embedding.bias)] += self.embedding.bias
        return block.astype(np.float16).tobytes()

    # -- file format --------------------------------------------------------------------------------------
    def payload(self) -> dict:
        """The model-file payload: head, recipe, backbone identity, threshold and metadata (no backbone weights)."""
        return {
            "kind": self.kind,
            "backbone": self.backbone.identity,
            **self.head.to_payload(),
            "recipe": self.recipe.to_dict(),
            "threshold": self.threshold,
            "resolution_m_per_px": self.resolution_m_per_px,
            "metadata": self.metadata,
            **({"int8": self.int8.to_payload()} if self.int8 is not None else {}),
            **(
                {
                    "embed_weight": torch.from_numpy(self.embedding.weight.copy()),
                    "embed_bias": torch.from_numpy(self.embedding.bias.copy()),
                    "embed_logit_scale": self.embedding.logit_scale,
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
        # Files written before std features (or before the wide part) had none: their recipe lacks the key.
        stored_recipe = {k: v for k, v in payload["recipe"].items() if k != "name"}
        for key in ("std_stages", "wide_std_stages"):
            stored_recipe[key] = tuple(stored_recipe.get(key, ()))
        recipe = PretrainedRecipe(**{"int8": False, "head": "linear", **stored_recipe})
        return cls(
            Head.from_payload(payload),
            recipe,
            threshold=float(payload["threshold"]),
            metadata=dict(payload.get("metadata") or {}),
            backbone=backbone,
            int8=Int8Calibration.from_payload(payload["int8"]) if "int8" in payload else None,
            embedding=(
                Embedding(
                    np.asarray(payload["embed_weight"], dtype=np.float32),
                    np.asarray(payload["embed_bias"], dtype=np.float32),
                    float(payload.get("embed_logit_scale", 0.0)),
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


@dataclass(frozen=True)
class _StdBlock:
    """One std stage's share of a scan: where its moments are, which head rows weigh its deviations, and how."""

    grid: int  # px per cell of its moments' grid (the cell, or the stage's stride if coarser)
    moments: tuple[int, int]  # its channels among the x means of the std stages on that grid
    rows: slice  # the head rows with weight on it (a blend's narrow part leaves rows at zero)
    weight: torch.Tensor  # (rows, channels)


def _std_blocks(w_std: np.ndarray, std_stages: Sequence[int], cell_px: int) -> list[_StdBlock]:
    """The _StdBlock of every std stage, from the head's std columns (std stages in stage order)."""
    blocks, start, on_grid = [], 0, {}
    for stage in sorted(std_stages):
        end, grid = start + STAGE_CHANNELS[stage], max(STAGE_STRIDES[stage], cell_px)
        if grid > 2 * cell_px:
            raise ModelError(f"deviations of stage {stage} (stride {grid} px) need cells of at least {grid // 2} px")
        used = np.flatnonzero(np.abs(w_std[:, start:end]).sum(axis=1))
        rows = slice(int(used.min()), int(used.max()) + 1) if len(used) else slice(0, 0)
        a = on_grid.get(grid, 0)
        on_grid[grid] = a + STAGE_CHANNELS[stage]
        weight = torch.from_numpy(np.ascontiguousarray(w_std[rows, start:end]))
        blocks.append(_StdBlock(grid, (a, on_grid[grid]), rows, weight))
        start = end
    return blocks


def std_columns(std_stages: Sequence[int]) -> np.ndarray:
    """Columns of the standard deviations of std_stages' channels in pooled features with std (means first)."""
    starts = np.cumsum([0, *STAGE_CHANNELS])
    return np.concatenate(
        [np.arange(starts[i], starts[i + 1], dtype=np.int64) + FEATURE_DIM for i in sorted(std_stages)]
        or [np.zeros(0, dtype=np.int64)]
    )


def select_features(pooled: np.ndarray, std_stages: Sequence[int]) -> np.ndarray:
    """Pooled features with all standard deviations (..., 1328) -> the means and std_stages' deviations."""
    if not std_stages:
        return pooled[..., :FEATURE_DIM]
    return np.concatenate([pooled[..., :FEATURE_DIM], pooled[..., std_columns(std_stages)]], axis=-1)


def feature_columns(std_stages: Sequence[int], layout: Sequence[int]) -> np.ndarray:
    """Columns of the means and std_stages' deviations within features holding the deviations of `layout`."""
    wanted = np.isin(std_columns(layout), std_columns(std_stages))
    if wanted.sum() != len(std_columns(std_stages)):
        raise InvalidInputError(f"std stages {tuple(std_stages)} are not all among {tuple(layout)}")
    return np.concatenate([np.arange(FEATURE_DIM), FEATURE_DIM + np.flatnonzero(wanted)])


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


# -- training ---------------------------------------------------------------------------------------------
def data_features(
    data: ChipSet, recipe: PretrainedRecipe, log: Callable[[str], None] | None = None, stats: dict | None = None
) -> np.ndarray:
    """(N, views, FEATURE_DIM) features of every example, through the recipe's feature cache (and kept on data)."""
    key = ("features", recipe.scale, recipe.jitter_copies, recipe.border_px, recipe.feature_std_stages)
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
            with_std=bool(recipe.feature_std_stages),
            cache=cache,
            log=log,
            stats=stats,
            shas=data.pixel_sha256s(),
        )
    finally:
        if cache is not None:
            cache.close()
    feats = select_features(feats, recipe.feature_std_stages)
    data.extra[key] = feats
    return feats


def fit_head(
    features: np.ndarray, labels: np.ndarray, recipe: PretrainedRecipe, example_weights: np.ndarray | None = None
) -> Head:
    """The recipe's head trained on every view's row of (N, views, F) features (a row per view, same label;
    ``example_weights``: each example's weight in the loss, None for all 1).

    With wide_std_stages, one MLP on the means and std_stages' deviations and one on all the features, their
    logits weighted 1 - wide_weight and wide_weight: still one head.
    """
    x = features.reshape(-1, features.shape[-1])
    y = np.repeat(np.asarray(labels), features.shape[1])
    rows = None if example_weights is None else np.repeat(np.asarray(example_weights), features.shape[1])
    if recipe.head == "linear":
        return fit_linear(x, y, recipe.C, rows)
    parts, weights = [np.arange(x.shape[1])], [1.0]
    if recipe.wide_std_stages:
        parts = [feature_columns(recipe.std_stages, recipe.feature_std_stages), *parts]
        weights = [1 - recipe.wide_weight, recipe.wide_weight]
    heads = fit_mlp_parts(x, y, parts, MlpSettings(), weights=rows)
    return blend_heads(list(zip(heads, parts)), weights, x.shape[1])


def test_features(features: np.ndarray, recipe: PretrainedRecipe) -> np.ndarray:
    """The features a chip is scored with: view 0, or the mean of the 8 flips/rotations with tta."""
    return features[:, :DIHEDRAL_VIEWS].mean(axis=1) if recipe.tta else features[:, 0]


def fit(
    data: ChipSet,
    recipe: PretrainedRecipe,
    log: Callable[[str], None] | None = None,
    ranges: dict[str, list[float]] | None = None,
) -> PretrainedClassifier:
    """Train the head (and the embedding) on all of data -> PretrainedClassifier at threshold 0.5."""
    return cv_and_fit(data, recipe, [], log, ranges=ranges)[1]


def cv_and_fit(
    data: ChipSet,
    recipe: PretrainedRecipe,
    fold_sets: Sequence[np.ndarray],
    log: Callable[[str], None] | None = None,
    workers: int = 1,
    ranges: dict[str, list[float]] | None = None,
) -> tuple[list[np.ndarray], PretrainedClassifier]:
    """Out-of-fold P(mining) on each set of folds (-1: in every training part, never scored) and the model trained
    on all of data (threshold 0.5). Every head and the int8 calibration's backbone passes share one pool of
    `workers` processes; given int8 ranges (e.g. the current model's) are kept, not measured again."""
    t0 = time.perf_counter()
    feats = data_features(data, recipe, log)
    images = calibration_images(data, recipe) if recipe.int8 else []
    cv_jobs, trains = _fold_jobs(fold_sets, np.ones(len(data), dtype=bool))
    # Calibration first (long unless cached), the embedding's PLS last (short): the workers finish together.
    jobs = [("calibration", (images, ranges))] if images else []
    jobs += [("head", idx) for idx in [np.arange(len(data)), *trains]]
    jobs += [("embedding", recipe.embedding_dims)] if recipe.embedding_dims else []
    results = map_in_processes(_pool_job, (feats, data.labels, recipe, data.weights), jobs, workers)
    passes: CalibrationPasses | None = results.pop(0) if images else None
    directions: Embedding | None = results.pop() if recipe.embedding_dims else None
    head = results[0]
    oofs = _oof_scores(feats, recipe, fold_sets, cv_jobs, results[1:])
    logits = head.logits(feats.reshape(-1, feats.shape[-1])) if directions is not None else None
    embedding = with_logit(directions, logits) if directions is not None else None
    int8 = None if passes is None else passes.calibration(head)
    if log and cv_jobs:
        log(f"cross-validation and fit: {len(jobs)} jobs in {time.perf_counter() - t0:.1f} s ({workers} processes)")
    return oofs, PretrainedClassifier(head, recipe, embedding=embedding, int8=int8)


def calibration_images(data: ChipSet, recipe: PretrainedRecipe, n: int = 200) -> list[tuple[str, np.ndarray]]:
    """(pixel sha256, image) of the up to n chips with the lowest sha256 (a sample that stays put as examples are
    added, so their backbone passes stay cached), rescaled and centre-cropped to multiples of 32 px."""
    step = INPUT_MULTIPLE_PX
    out = []
    for sha, i in sorted((sha, i) for i, sha in enumerate(data.pixel_sha256s())):
        arr = rescale(as_rgb_chip(data.chips[i], f"chip {i}"), recipe.scale)
        h, w = (arr.shape[0] // step) * step, (arr.shape[1] // step) * step
        if h >= 2 * step and w >= 2 * step:
            top, left = (arr.shape[0] - h) // 2, (arr.shape[1] - w) // 2
            out.append((sha, np.ascontiguousarray(arr[top : top + h, left : left + w])))
        if len(out) == n:
            break
    return out


@dataclass(frozen=True)
class CalibrationPasses:
    """The head-independent part of an int8 calibration: ranges, both backbones' features of the images, and of a
    subsample of the scan windows of a mosaic of them (int8_correction)."""

    ranges: dict[str, list[float]]
    fp32: np.ndarray  # (n, features) through the fp32 backbone
    int8: np.ndarray  # (n, features) through the int8 backbone built with `ranges`
    check_images: tuple[np.ndarray, ...] = field(default=(), compare=False, repr=False)  # the first images' pixels
    windows_fp32: np.ndarray | None = field(default=None, compare=False, repr=False)  # (windows, features)
    windows_int8: np.ndarray | None = field(default=None, compare=False, repr=False)  # the same windows, int8

    def calibration(self, head: Head) -> Int8Calibration:
        """The Int8Calibration of a head: these ranges, the int8 logit correction fitted on the windows (without
        windows: the mean int8 - fp32 logit over the images), and the check chips with their mean |int8 - fp32|
        logit after the correction (what a scan compares with on its own CPU)."""
        fp32, int8 = head.logits(self.fp32), head.logits(self.int8)
        cal = Int8Calibration(self.ranges, float(np.mean(int8 - fp32)), len(self.fp32), QUANTIZATION)
        if self.windows_int8 is not None and len(self.windows_int8):
            dlogit = head.logits(self.windows_int8) - head.logits(self.windows_fp32)
            weights, centre, shift = fit_correction(self.windows_int8, dlogit)
            cal = replace(cal, logit_shift=shift, logit_weights=weights, logit_centre=centre)
        n = len(self.check_images)
        check = mean_abs_dlogit(fp32[:n], int8[:n], cal.correction(self.int8[:n])) if n else None
        return replace(cal, check_dlogit=check, check_images=self.check_images)


def calibration_passes(
    images: Sequence[tuple[str, np.ndarray]],
    recipe: PretrainedRecipe,
    ranges: dict[str, list[float]] | None = None,
) -> CalibrationPasses:
    """int8 activation ranges from the images (MinMax; given ranges are kept, unless they do not fit this export of
    the backbone) and both backbones' features of each (sha256, image) and of their mosaic's scan windows, cached
    under the ranges' digest."""
    backbone = load_backbone()
    if ranges is not None:
        try:
            return _passes(images, recipe, backbone, ranges)
        except ModelError as exc:  # e.g. another ONNX export names its tensors differently: measure them again
            warnings.warn(f"int8 ranges not kept ({exc}); measuring them again", ModelFallbackWarning, stacklevel=2)
    return _passes(images, recipe, backbone, int8_ranges(backbone, [im for _, im in images]))


def _passes(
    images: Sequence[tuple[str, np.ndarray]], recipe: PretrainedRecipe, backbone: Backbone, ranges: dict
) -> CalibrationPasses:
    """calibration_passes with known ranges: each image's fp32 (view 0) and int8 (view 1) features, cached."""
    with_std = bool(recipe.feature_std_stages)
    digest = hashlib.sha256(json.dumps(ranges, sort_keys=True).encode()).hexdigest()[:16]
    prep = f"{prep_key(backbone, 1.0, recipe.border_px, with_std)}|calibration-crop32|int8={digest}|{QUANTIZATION}"
    cache = FeatureCache(recipe.feature_cache) if recipe.feature_cache else None
    sessions: list[OnnxBackbone] = []
    pairs = []
    try:
        for sha, im in images:
            have = cache.get(prep, sha) if cache is not None else {}
            if not {0, 1} <= set(have):
                sessions = sessions or [onnx_backbone(backbone), onnx_backbone(backbone, ranges)]
                have = dict(enumerate(_twin_features(im, sessions, recipe.border_px, with_std)))
                if cache is not None:
                    cache.put(prep, sha, have)
            pairs.append((have[0], have[1]))
        windows = _mosaic_windows(images, recipe, backbone, ranges, (cache, prep))
    finally:
        if cache is not None:
            cache.close()
    fp32, int8 = (select_features(np.stack(side), recipe.feature_std_stages) for side in zip(*pairs))
    return CalibrationPasses(ranges, fp32, int8, tuple(im for _, im in images[:CHECK_CHIPS]), *windows)


def _mosaic_windows(
    images: Sequence[tuple[str, np.ndarray]],
    recipe: PretrainedRecipe,
    backbone: Backbone,
    ranges: dict,
    cached: tuple[FeatureCache | None, str],
) -> tuple[np.ndarray, np.ndarray]:
    """(windows, features) fp32 and int8 features of every WINDOW_STRIDE_CELLS-th scan window of the images'
    calibration_mosaic, cached (under the images' sha256s) beside the images' own passes."""
    cache, prep = cached
    n = recipe.n_features
    key = hashlib.sha256("|".join(sha for sha, _ in images).encode()).hexdigest()
    scan = (recipe.feature_std_stages, recipe.cell_px, recipe.window_cells, recipe.halo_px, recipe.chunk_px)
    prep = f"{prep}|mosaic-windows-{SLOT_PX}px-stride{WINDOW_STRIDE_CELLS}|{scan}"
    have = cache.get(prep, key) if cache is not None else {}
    if not {0, 1} <= set(have):
        mosaic = calibration_mosaic([im for _, im in images])
        sides = enumerate((None, ranges))  # fp32, int8
        have = {view: window_features(mosaic, recipe, backbone, r, WINDOW_STRIDE_CELLS) for view, r in sides}
        if cache is not None:
            cache.put(prep, key, {view: a.ravel() for view, a in have.items()})
    return have[0].reshape(-1, n), have[1].reshape(-1, n)


def window_features(
    image: np.ndarray,
    recipe: PretrainedRecipe,
    backbone: Backbone,
    ranges: dict[str, list[float]] | None = None,
    stride_cells: int = 1,
) -> np.ndarray:
    """(windows, features) pooled features of the windows a scan scores on an image, every stride_cells-th along
    each axis, built as the scan builds them (its first layer with identity weights); int8 given ranges."""
    n = recipe.n_features
    zeros = np.zeros(n, dtype=np.float32)
    identity = Head(np.eye(n, dtype=np.float32), zeros, zeros, 0.0, relu=False)
    int8 = None if ranges is None else Int8Calibration(ranges, 0.0)
    twin = PretrainedClassifier(identity, recipe, backbone=backbone, int8=int8)
    twin.set_int8(ranges is not None)
    z, _ = twin._first_layer(image, 0)
    return np.ascontiguousarray(z[:, ::stride_cells, ::stride_cells].reshape(n, -1).T.numpy())


def _twin_features(image: np.ndarray, sessions: Sequence[OnnxBackbone], border_px: int, with_std: bool) -> list:
    """An HxWx3 uint8 image's pooled features (all deviations) through each of the backbone twins."""
    with torch.inference_mode():
        return [pool_maps(b.pixel_stage_maps(image), border_px, with_std=with_std)[0].numpy() for b in sessions]


def fit_embedding(mean_features: np.ndarray, labels: np.ndarray, logits: np.ndarray, dims: int) -> Embedding:
    """PLS directions of the standardised mean features plus the head's logit (weight 2): the tile embedding.

    Leave-one-block-out retrieval on the Texty crops chose it (RESULTS.md): dims - 1 PLS components of the
    standardised features, each row scaled to a median norm of 1, and the head's logit (one per row of the
    flattened views) scaled to standard deviation 2. The PLS part is affine in the mean features, so the
    scan computes it per location and pools it per tile.
    """
    return with_logit(embedding_directions(mean_features, labels, dims), logits)


def with_logit(embedding: Embedding, logits: np.ndarray) -> Embedding:
    """The embedding with the head's logit as its last value, scaled to standard deviation 2 on these logits."""
    return replace(embedding, logit_scale=2.0 / (float(np.std(logits)) or 1.0))


def embedding_directions(mean_features: np.ndarray, labels: np.ndarray, dims: int) -> Embedding:
    """fit_embedding's PLS part (no logit value): it does not depend on the head."""
    from sklearn.cross_decomposition import PLSRegression

    x = mean_features.reshape(-1, mean_features.shape[-1]).astype(np.float64)
    y = np.repeat(np.asarray(labels, dtype=np.float64), mean_features.shape[1])
    mu, sd = x.mean(axis=0), x.std(axis=0)
    sd[sd == 0] = 1.0
    z = (x - mu) / sd
    with warnings.catch_warnings():
        # A small training set is explained before the last components: they come out degenerate, not wrong.
        warnings.filterwarnings("ignore", message="y residual is constant")
        pls = PLSRegression(n_components=dims - 1, scale=False).fit(z, y)
    rot, centre = pls.x_rotations_, z.mean(axis=0)
    spread = float(np.median(np.linalg.norm((z - centre) @ rot, axis=1))) or 1.0
    a = (rot.T / sd[None, :]) / spread
    b = -(rot.T @ (mu / sd + centre)) / spread
    return Embedding(a.astype(np.float32), b.astype(np.float32))


def cross_validate(
    data: ChipSet,
    recipe: PretrainedRecipe,
    folds: np.ndarray | Sequence[np.ndarray],
    log: Callable[[str], None] | None = None,
    train_mask: np.ndarray | None = None,
    workers: int = 1,
) -> list[np.ndarray]:
    """Out-of-fold P(mining) for every example on each given set of folds (features computed once, cached); the
    heads of all folds train in `workers` processes (one thread each)."""
    t0 = time.perf_counter()
    feats = data_features(data, recipe, log)
    allowed = np.ones(len(data), dtype=bool) if train_mask is None else train_mask
    fold_sets = [folds] if isinstance(folds, np.ndarray) else list(folds)
    jobs, trains = _fold_jobs(fold_sets, allowed)
    shared = (feats, data.labels, recipe, data.weights)
    heads = map_in_processes(_pool_job, shared, [("head", idx) for idx in trains], workers)
    if log:
        log(f"cross-validation: {len(jobs)} heads in {time.perf_counter() - t0:.1f} s ({workers} processes)")
    return _oof_scores(feats, recipe, fold_sets, jobs, heads)


def _fold_jobs(fold_sets: Sequence[np.ndarray], allowed: np.ndarray) -> tuple[list[tuple[int, int]], list]:
    """(fold set, fold) of every CV head and its training indices (outside the fold and allowed)."""
    jobs = [(s, k) for s, f in enumerate(fold_sets) for k in range(int(f.max()) + 1)]
    return jobs, [np.flatnonzero((fold_sets[s] != k) & allowed) for s, k in jobs]


def _oof_scores(
    feats: np.ndarray, recipe: PretrainedRecipe, fold_sets: Sequence[np.ndarray], jobs: list, heads: list[Head]
) -> list[np.ndarray]:
    """Each fold set's out-of-fold P(mining) from its folds' heads (0 where never scored)."""
    out = [np.zeros(len(feats), dtype=np.float32) for _ in fold_sets]
    for (s, k), head in zip(jobs, heads):
        test = fold_sets[s] == k
        out[s][test] = _sigmoid(head.logits(test_features(feats[test], recipe)))
    return out


def _pool_job(shared: tuple, job: tuple[str, object]) -> object:
    """One job of cv_and_fit's pool over (features, labels, recipe, example weights or None): ("head", training
    indices) -> Head, ("calibration", (images, ranges)) -> CalibrationPasses or ("embedding", dims) -> the
    embedding's PLS part."""
    feats, labels, recipe, weights = shared
    kind, arg = job
    if kind == "calibration":
        images, ranges = arg
        return calibration_passes(images, recipe, ranges)
    if kind == "embedding":
        return embedding_directions(feats[..., :FEATURE_DIM], labels, int(arg))
    return fit_head(feats[arg], labels[arg], recipe, None if weights is None else weights[arg])
