"""The CNN Classifier (an ensemble of MiningNets + threshold + metadata) and the model-file byte format."""

from __future__ import annotations

import hashlib
import io
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from amberwatch.db import writing
from amberwatch.errors import ImageError, InvalidInputError, ModelError
from amberwatch.imagery.decode import to_rgb_array
from amberwatch.model.network import MiningNet, NetConfig, fuse_for_inference
from amberwatch.model.windows import inner_cells

FORMAT = "amberwatch-model"
FORMAT_VERSION = 2  # 1: CNN only, no "kind"; 2: "kind" is "cnn" or "pretrained"
DIGEST_KEY = "content_sha256"  # files written since issue 26 carry content_sha256 of everything else in them
_MAX_BATCH = 32


def as_rgb_chip(chip: np.ndarray, name: str = "chip") -> np.ndarray:
    """Return chip as HxWx3 uint8; grayscale, RGBA, palette-index and 16-bit arrays are converted via decode."""
    arr = np.asarray(chip)
    if arr.size == 0:
        raise ImageError(f"{name}: image has no pixels (shape {arr.shape})")
    if arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8:
        return arr
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 2, 3, 4)):
        raise ImageError(f"{name}: expected an HxW or HxWxC image array (C in 1..4), got shape {arr.shape}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype in (np.uint16, np.int32, np.int64, np.float32, np.float64) and arr.ndim == 3:
        # Multi-channel 16-bit/float: rescale each band from its own range, as decode does for one band.
        bands = [
            to_rgb_array(Image.fromarray(arr[:, :, i].astype(np.float32), mode="F"), name)[:, :, 0] for i in range(3)
        ]
        return np.stack(bands, axis=2) if arr.shape[2] >= 3 else np.repeat(bands[0][:, :, None], 3, axis=2)
    try:
        if arr.ndim == 2 and arr.dtype != np.uint8:
            img = Image.fromarray(arr.astype(np.float32), mode="F")
        else:
            img = Image.fromarray(np.ascontiguousarray(arr))
    except (TypeError, ValueError) as exc:
        raise ImageError(f"{name}: unsupported image array of shape {arr.shape} and dtype {arr.dtype}") from exc
    return to_rgb_array(img, name)


Px = tuple[int, int, int, int]  # a rectangle of an image in pixels: (top, bottom, left, right), ends excluded


@dataclass(frozen=True)
class ScanPass:
    """One backbone pass of a score map: the pixels whose cells it writes, and those it reads (them and a halo)."""

    writes: Px
    reads: Px


class VersionedModel:
    """What both recipes' models share: metadata, and a version kept in it."""

    metadata: dict

    @property
    def version(self) -> str:
        """Model version: '0' for the bundled model, else the stored version or content hash."""
        return str(self.metadata.get("version", "unversioned"))

    @version.setter
    def version(self, value: str) -> None:
        self.metadata["version"] = str(value)

    @property
    def training_sha256s(self) -> set[str] | None:
        """Pixel sha256s of the examples the model was trained on, as its file records them (None: not recorded)."""
        stored = self.metadata.get("training_oof")  # example pixel sha256 -> out-of-fold score
        return set(stored) if isinstance(stored, dict) and stored else None

    embedding_dims = 0  # values per tile embedding kept by the scan (0: this model makes none)

    @property
    def has_int8(self) -> bool:
        """Whether the model carries what an int8 backbone needs (only pretrained-recipe models can)."""
        return False

    def set_int8(self, on: bool) -> None:
        """Score maps through an int8 backbone: only pretrained-recipe models with int8 calibration have one."""
        if on:
            raise ModelError(f"model v{self.version} ({self.kind}) has no int8 backbone (recipe pretrained has)")

    def passes_for(self, h_px: int, w_px: int, margin_cells: int, wanted: np.ndarray | None) -> list[ScanPass]:
        """The backbone passes grid_and_cell_embeddings needs over an h_px x w_px image for the ``wanted`` cells
        (bool, the cells at least margin_cells from the edges; None: all): here one pass over the whole image."""
        whole = (0, h_px, 0, w_px)
        return [ScanPass(whole, whole)]

    def grid_and_cell_embeddings(
        self, image: np.ndarray, margin_cells: int = 0, passes: list[ScanPass] | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """predict_grid's P(mining) per cell at least margin_cells from the edges, and per-cell embedding sums
        (None: this model has no embedding). ``passes`` (from passes_for) is for models that tile their passes."""
        grid = self.predict_grid(image)
        return grid[inner_cells(*grid.shape, margin_cells)], None


class Classifier(VersionedModel):
    """Maps RGB chips of any size to P(mining); predict_grid scores every cell of a mosaic in one pass."""

    kind = "cnn"
    block_tiles = 4  # tiles per side the scan hands predict_grid at once (plus margin)

    def __init__(
        self,
        net_configs: NetConfig | Sequence[NetConfig],
        state_dicts: list[dict],
        *,
        threshold: float = 0.5,
        resolution_m_per_px: float = 0.38,
        metadata: dict | None = None,
    ) -> None:
        if not state_dicts:
            raise ModelError("a classifier needs at least one network")
        if isinstance(net_configs, NetConfig):
            net_configs = [net_configs] * len(state_dicts)
        self.net_configs = list(net_configs)
        if len(self.net_configs) != len(state_dicts):
            raise ModelError(f"{len(self.net_configs)} network configs for {len(state_dicts)} networks")
        if len({(c.cell_px, c.window_cells, c.downsample) for c in self.net_configs}) != 1:
            raise ModelError("ensemble members must share cell_px, window_cells and downsample")
        net_config = self.net_configs[0]
        self.net_config = net_config
        self.state_dicts = state_dicts
        self.threshold = float(threshold)
        self.resolution_m_per_px = float(resolution_m_per_px)
        self.metadata: dict = dict(metadata or {})
        self.cell_px = net_config.cell_px
        # Window pooling needs window_cells // 2 neighbouring cells plus the conv trunk's receptive-field halo.
        # The local contrast statistics reach further; their residual edge effect is small (RESULTS.md).
        halo_px = max(receptive_field_px(c, include_norm=False) for c in self.net_configs) // 2
        raw = (net_config.window_cells // 2) * self.cell_px + halo_px
        self.context_px = int(-(-raw // self.cell_px) * self.cell_px)
        self._nets = [self._build(c, sd) for c, sd in zip(self.net_configs, state_dicts)]

    @staticmethod
    def _build(config: NetConfig, state_dict: dict) -> MiningNet:
        net = MiningNet(config)
        net.load_state_dict(state_dict)
        return fuse_for_inference(net)

    def _chip_batches(self, chips: Sequence[np.ndarray]):
        """Yield (indices, float NCHW tensor) for chips grouped by shape."""
        min_side = 2 * self.cell_px
        d = self.net_config.downsample
        by_shape: dict[tuple[int, int], list[int]] = defaultdict(list)
        prepared: list[np.ndarray] = []
        for i, chip in enumerate(chips):
            arr = as_rgb_chip(chip, f"chip {i}")
            h, w = arr.shape[:2]
            ph, pw = max(0, min_side - h), max(0, min_side - w)
            if ph or pw:
                mode = "reflect" if min(h, w) > 1 else "edge"
                arr = np.pad(arr, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode=mode)
            h, w = arr.shape[:2]
            arr = arr[: h - h % d, : w - w % d]
            prepared.append(arr)
            by_shape[arr.shape[:2]].append(i)
        for idx in by_shape.values():
            for start in range(0, len(idx), _MAX_BATCH):
                part = idx[start : start + _MAX_BATCH]
                batch = np.stack([prepared[i] for i in part])
                yield part, torch.from_numpy(batch).permute(0, 3, 1, 2).float().contiguous()

    def _ensemble(self, x: torch.Tensor, method: str) -> torch.Tensor:
        """Mean member probability; preprocessing computed once per distinct preprocessing setting."""
        cache: dict[tuple, torch.Tensor] = {}
        probs = []
        for net in self._nets:
            key = net.preprocess_key
            if key not in cache:
                cache[key] = net.preprocess(x)
            probs.append(torch.sigmoid(getattr(net, method)(cache[key])))
        return torch.stack(probs).mean(0)

    def predict_proba(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """Chips HxWx3 uint8 of any size -> (N,) float32 P(mining), mean over the ensemble."""
        if isinstance(chips, np.ndarray) and chips.ndim == 3:
            raise InvalidInputError(f"predict_proba takes a sequence of chips, got one array of shape {chips.shape}")
        out = np.zeros(len(chips), dtype=np.float32)
        with torch.inference_mode():
            for part, x in self._chip_batches(chips):
                p = self._ensemble(x, "chip_logits_from_input")
                out[part] = p.numpy()
        return out

    def predict_grid(self, image: np.ndarray) -> np.ndarray:
        """Image HxWx3 uint8 (H, W multiples of cell_px) -> (H//cell_px, W//cell_px) float32 P(mining) per cell."""
        arr = as_rgb_chip(image, "image")
        h, w = arr.shape[:2]
        if h % self.cell_px or w % self.cell_px or h == 0 or w == 0:
            raise InvalidInputError(f"predict_grid needs H and W multiples of cell_px={self.cell_px}, got {h}x{w}")
        x = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None].float().contiguous()
        with torch.inference_mode():
            p = self._ensemble(x, "grid_logits_from_input")[0]
        return p.numpy().astype(np.float32)

    def payload(self) -> dict:
        """The model-file payload: networks, threshold and metadata."""
        return {
            "kind": self.kind,
            "net_configs": [c.to_dict() for c in self.net_configs],
            "state_dicts": self.state_dicts,
            "threshold": self.threshold,
            "resolution_m_per_px": self.resolution_m_per_px,
            "metadata": self.metadata,
        }

    @classmethod
    def from_payload(cls, payload: dict, name: str) -> Classifier:
        """Inverse of payload."""
        return cls(
            [NetConfig.from_dict(d) for d in payload["net_configs"]],
            list(payload["state_dicts"]),
            threshold=float(payload["threshold"]),
            resolution_m_per_px=float(payload["resolution_m_per_px"]),
            metadata=dict(payload.get("metadata") or {}),
        )

    def to_bytes(self) -> bytes:
        """Serialise to the single-file model format."""
        return payload_bytes(self.payload())

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model (weights, threshold, metadata) to ONE file, atomically."""
        write_atomically(path, self.to_bytes())


def payload_bytes(payload: dict) -> bytes:
    """A model payload as the bytes of one model file (format name and version added, and its content digest)."""
    full = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    full[DIGEST_KEY] = content_sha256(full)
    buf = io.BytesIO()
    torch.save(full, buf)
    return buf.getvalue()


def content_sha256(payload: dict) -> str:
    """sha256 of a model file's content: every entry but DIGEST_KEY, hashed by value (keys sorted, tensors by dtype,
    shape and bytes), so it does not depend on how a torch version lays the file out."""
    h = hashlib.sha256()
    _digest_value(h, {k: v for k, v in payload.items() if k != DIGEST_KEY})
    return h.hexdigest()


def _digest_value(h: hashlib._Hash, value: object) -> None:
    """Feed one payload value to h, tagged by its kind (lists and tuples alike: a file may store either)."""
    if isinstance(value, dict):
        h.update(b"d%d:" % len(value))
        for key in sorted(value, key=repr):
            _digest_value(h, key)
            _digest_value(h, value[key])
    elif isinstance(value, list | tuple):
        h.update(b"l%d:" % len(value))
        for item in value:
            _digest_value(h, item)
    elif isinstance(value, torch.Tensor | np.ndarray):
        t = torch.as_tensor(value).detach().cpu().contiguous()
        h.update(f"t{t.dtype}{tuple(t.shape)}:".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    else:
        h.update(f"{type(value).__name__}:{value!r};".encode())


def write_atomically(path: str | os.PathLike[str], data: bytes) -> None:
    """Write bytes to path through a temporary file, so a killed process never leaves half a model (a full disk is
    a StorageFullError naming the path, and leaves no temporary file)."""
    p = Path(path)
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    with writing(p, "model file"):
        try:
            tmp.write_bytes(data)
            os.replace(tmp, p)
        finally:
            tmp.unlink(missing_ok=True)


def receptive_field_px(config: NetConfig, include_norm: bool = True) -> int:
    """Receptive field of one trunk cell (plus, if include_norm, the local normalisation's reach), in input px."""
    rf, jump = 1 + (4 * (config.local_norm_px // 2) if include_norm else 0), 1
    for _ in config.widths:
        for stride in (2, 1):
            rf += 2 * jump
            jump *= stride
    return rf * config.downsample + config.downsample - 1
