"""The fully convolutional mining CNN: one conv trunk, pooled per chip or densely per grid cell."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from amberwatch.errors import InvalidInputError
from amberwatch.model.limits import check_limits

# Fixed input normalisation (0..255 RGB): centred, roughly unit variance on aerial imagery.
PIXEL_MEAN = (110.0, 115.0, 100.0)
PIXEL_STD = (50.0, 50.0, 50.0)
# What a network can be built and scanned with: (lowest, highest) of each number in its config.
NET_LIMITS: dict[str, tuple[float, float]] = {
    "downsample": (1, 16),
    "window_cells": (1, 63),
    "local_norm_px": (0, 1024),
    "pool_r": (0.0, 100.0),
}


@dataclass(frozen=True)
class NetConfig:
    """Architecture hyper-parameters stored in the model file."""

    widths: tuple[int, ...] = (24, 48, 64, 96)
    downsample: int = 2  # input pixels averaged into one network pixel before the trunk
    window_cells: int = 5  # side (in cells) of the window predict_grid pools for each cell
    grayscale: bool = False  # feed luminance only (colour-blind model)
    local_norm_px: int = 0  # >0: subtract the local mean and divide by the local contrast over this box (network px)
    pool_r: float = (
        0.0  # 0: average-pool features; r > 0: log-mean-exp pooling of cell logits (soft max, for sparse pits)
    )

    def __post_init__(self) -> None:
        check_limits("network", vars(self), NET_LIMITS)
        if not 1 <= len(self.widths) <= 8 or not all(1 <= w <= 4096 for w in self.widths):
            raise InvalidInputError(f"network widths {self.widths!r} are out of range (1 to 8 layers of 1 to 4096)")

    @property
    def cell_px(self) -> int:
        """Stride of the trunk's output cells in input pixels."""
        return self.downsample * 2 ** len(self.widths)

    def to_dict(self) -> dict:
        """Plain dict for the model file."""
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> NetConfig:
        """Inverse of to_dict."""
        return cls(
            widths=tuple(int(w) for w in d["widths"]),
            downsample=int(d["downsample"]),
            window_cells=int(d["window_cells"]),
            grayscale=bool(d.get("grayscale", False)),
            pool_r=float(d.get("pool_r", 0.0)),
            local_norm_px=int(d.get("local_norm_px", 0)),
        )


def _conv_bn(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class MiningNet(nn.Module):
    """Stages of (stride-2 conv, conv), each conv+BN+ReLU; linear head on average-pooled features."""

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        c_in = 1 if config.grayscale else 3
        for width in config.widths:
            layers += _conv_bn(c_in, width, 2) + _conv_bn(width, width, 1)
            c_in = width
        self.trunk = nn.Sequential(*layers)
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(c_in, 1)
        self.register_buffer("mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, x: torch.Tensor, downsampled: bool = False) -> torch.Tensor:
        """Float NCHW 0..255 RGB -> normalised, downsampled network input (downsampled: x is already pooled)."""
        # Pooling first is exact (normalisation is per-pixel affine) and 4x cheaper.
        if self.config.downsample > 1 and not downsampled:
            x = block_mean(x, self.config.downsample)
        x = (x - self.mean) / self.std
        if self.config.grayscale:
            x = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
        if self.config.local_norm_px > 0:
            x = local_contrast_norm(x, self.config.local_norm_px)
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Float NCHW 0..255 RGB -> trunk feature map (one cell per cell_px input pixels)."""
        return self.trunk(self.preprocess(x))

    def _cell_logits(self, f: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.dropout(f), self.head.weight[:, :, None, None], self.head.bias).squeeze(1)

    @property
    def preprocess_key(self) -> tuple:
        """Members with equal keys share the (parameter-free) preprocessing output."""
        return (self.config.grayscale, self.config.downsample, self.config.local_norm_px)

    def forward(self, x: torch.Tensor, downsampled: bool = False) -> torch.Tensor:
        """Chip logits (N,): pooled over the whole chip (downsampled: x is already pooled)."""
        return self.chip_logits_from_input(self.preprocess(x, downsampled))

    def chip_logits_from_input(self, z: torch.Tensor) -> torch.Tensor:
        """Chip logits (N,) from preprocessed input z."""
        f = self.trunk(z)
        r = self.config.pool_r
        if r <= 0:
            return self.head(self.dropout(f.mean(dim=(2, 3)))).squeeze(1)
        cells = self._cell_logits(f).flatten(1)
        return (torch.logsumexp(r * cells, dim=1) - math.log(cells.shape[1])) / r

    def grid_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Per-cell logits (N, H/cell, W/cell) of the window_cells x window_cells window centred on each cell."""
        return self.grid_logits_from_input(self.preprocess(x))

    def grid_logits_from_input(self, z: torch.Tensor) -> torch.Tensor:
        """Per-cell window logits from preprocessed input z."""
        f = self.trunk(z)
        k = self.config.window_cells
        r = self.config.pool_r
        if r <= 0:
            f = F.avg_pool2d(f, k, stride=1, padding=k // 2, count_include_pad=False)
            return self._cell_logits(f)
        cells = r * self._cell_logits(f)
        top = cells.amax(dim=(1, 2), keepdim=True)
        mean_exp = F.avg_pool2d(torch.exp(cells - top)[:, None], k, stride=1, padding=k // 2, count_include_pad=False)
        return (torch.log(mean_exp.clamp_min(1e-30))[:, 0] + top) / r


def block_mean(x: torch.Tensor, d: int) -> torch.Tensor:
    """Mean of d x d pixel blocks (= avg_pool2d(x, d), several times faster on CPU); edge remainders dropped."""
    h, w = x.shape[2] - x.shape[2] % d, x.shape[3] - x.shape[3] % d
    x = x[:, :, :h, :w]
    total = sum(x[:, :, i::d, j::d] for i in range(d) for j in range(d))
    return total * (1.0 / (d * d))


def _box_mean_1d(x: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """Mean over a centred window of `size` along dim (window shrinks at the borders), via cumulative sums."""
    p = size // 2
    n = x.shape[dim]
    c = torch.cumsum(x, dim=dim)
    head = torch.zeros_like(c.narrow(dim, 0, 1)).expand(*[p + 1 if d == dim else -1 for d in range(x.dim())])
    tail = c.narrow(dim, n - 1, 1).expand(*[p if d == dim else -1 for d in range(x.dim())])
    padded = torch.cat([head, c, tail], dim=dim)  # padded[j] = sum of x[:j - p], clamped to 0..n
    total = padded.narrow(dim, 2 * p + 1, n) - padded.narrow(dim, 0, n)
    idx = torch.arange(n, device=x.device)
    count = ((idx + p + 1).clamp(max=n) - (idx - p).clamp(min=0)).to(x.dtype)
    shape = [1] * x.dim()
    shape[dim] = n
    return total / count.view(shape)


def _box_blur(x: torch.Tensor, size: int) -> torch.Tensor:
    """Separable box mean over size x size (shrinking at the borders), same shape as x."""
    return _box_mean_1d(_box_mean_1d(x, size, 2), size, 3)


def local_contrast_norm(x: torch.Tensor, size: int) -> torch.Tensor:
    """Remove the local mean colour and scale by the local contrast: season, haze and exposure drop out."""
    centred = x - _box_blur(x, size)
    contrast = _box_blur(centred.pow(2).mean(dim=1, keepdim=True), size)
    return centred / torch.sqrt(contrast + 0.05)


def fuse_for_inference(net: MiningNet) -> MiningNet:
    """Fold every BatchNorm into its conv (eval only): same outputs, fewer ops."""
    net.eval()
    mods = list(net.trunk)
    fused: list[nn.Module] = []
    i = 0
    while i < len(mods):
        m = mods[i]
        if isinstance(m, nn.Conv2d) and i + 1 < len(mods) and isinstance(mods[i + 1], nn.BatchNorm2d):
            fused.append(torch.nn.utils.fusion.fuse_conv_bn_eval(m, mods[i + 1]))
            i += 2
        else:
            fused.append(m)
            i += 1
    net.trunk = nn.Sequential(*fused)
    return net
