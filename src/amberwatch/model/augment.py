"""Training-time augmentation: random crops, flips/rotations, scale, colour/season/brightness jitter, grayscale."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Strength of each augmentation (0 disables it)."""

    scale_jitter: float = 0.2  # crop side scaled by exp(U(-s, s)) before resizing to crop_px
    brightness: float = 0.35  # multiplicative, U(1-b, 1+b)
    contrast: float = 0.35
    saturation: float = 0.6
    hue_deg: float = 25.0
    channel_gain: float = 0.1  # independent per-channel gain U(1-g, 1+g): white balance / season tint
    grayscale_p: float = 0.25
    noise_std: float = 3.0  # gaussian pixel noise (0..255 units)

    def to_dict(self) -> dict:
        """Plain dict for the model file."""
        return asdict(self)


def random_crop(chip: np.ndarray, side_px: int, rng: np.random.Generator) -> np.ndarray:
    """A side_px x side_px crop at a random position (reflect-padded when the chip is smaller)."""
    h, w = chip.shape[:2]
    pad_h, pad_w = max(0, side_px - h), max(0, side_px - w)
    if pad_h or pad_w:
        top, left = pad_h // 2, pad_w // 2
        chip = np.pad(
            chip, ((top, pad_h - top), (left, pad_w - left), (0, 0)), mode="reflect" if min(h, w) > 1 else "edge"
        )
        h, w = chip.shape[:2]
    y = int(rng.integers(0, h - side_px + 1))
    x = int(rng.integers(0, w - side_px + 1))
    out = chip[y : y + side_px, x : x + side_px]
    k = int(rng.integers(0, 4))
    if k:
        out = np.rot90(out, k)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return out


def make_batch(
    chips: list[np.ndarray], crop_px: int, aug: AugmentConfig | None, rng: np.random.Generator
) -> torch.Tensor:
    """Float NCHW 0..255 batch of augmented crop_px crops (aug None: plain random crops, no colour change)."""
    side = crop_px
    if aug is not None and aug.scale_jitter > 0:
        side = round(crop_px * float(np.exp(rng.uniform(-aug.scale_jitter, aug.scale_jitter))))
        side = max(8, side)
    arr = np.stack([random_crop(c, side, rng) for c in chips]).astype(np.float32)
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
    if side != crop_px:
        x = F.interpolate(x, size=(crop_px, crop_px), mode="bilinear", align_corners=False, antialias=side > crop_px)
    if aug is None:
        return x
    return colour_jitter(x, aug, rng)


def _u(rng: np.random.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return torch.from_numpy(rng.uniform(lo, hi, size=n).astype(np.float32))


def colour_jitter(x: torch.Tensor, aug: AugmentConfig, rng: np.random.Generator) -> torch.Tensor:
    """Per-sample brightness, contrast, saturation, hue rotation, channel gain, grayscale and noise."""
    n = x.shape[0]
    x = x / 255.0
    gray = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    if aug.saturation > 0:
        s = _u(rng, n, 1 - aug.saturation, 1 + aug.saturation).view(n, 1, 1, 1)
        x = gray + (x - gray) * s
    if aug.hue_deg > 0:
        x = _rotate_hue(x, _u(rng, n, -aug.hue_deg, aug.hue_deg))
    if aug.channel_gain > 0:
        g = torch.from_numpy(rng.uniform(1 - aug.channel_gain, 1 + aug.channel_gain, size=(n, 3)).astype(np.float32))
        x = x * g.view(n, 3, 1, 1)
    if aug.contrast > 0:
        c = _u(rng, n, 1 - aug.contrast, 1 + aug.contrast).view(n, 1, 1, 1)
        m = x.mean(dim=(1, 2, 3), keepdim=True)
        x = m + (x - m) * c
    if aug.brightness > 0:
        x = x * _u(rng, n, 1 - aug.brightness, 1 + aug.brightness).view(n, 1, 1, 1)
    if aug.grayscale_p > 0:
        to_gray = torch.from_numpy(rng.random(n) < aug.grayscale_p)
        if bool(to_gray.any()):
            g = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand(-1, 3, -1, -1)
            x = torch.where(to_gray.view(n, 1, 1, 1), g, x)
    x = x.clamp(0, 1) * 255.0
    if aug.noise_std > 0:
        gen = torch.Generator().manual_seed(int(rng.integers(0, 2**31)))
        x = (x + torch.randn(x.shape, generator=gen) * aug.noise_std).clamp(0, 255)
    return x


def _rotate_hue(x: torch.Tensor, deg: torch.Tensor) -> torch.Tensor:
    """Rotate hue by deg (per sample) in YIQ space: a cheap linear stand-in for HSV hue shifts."""
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    from_yiq = torch.linalg.inv(to_yiq)
    th = torch.deg2rad(deg)
    cos, sin = torch.cos(th), torch.sin(th)
    n = x.shape[0]
    rot = torch.zeros(n, 3, 3)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    mat = from_yiq @ rot @ to_yiq  # (n, 3, 3)
    return torch.einsum("nij,njhw->nihw", mat, x)
