"""The training recipe chosen by block-grouped CV (see scripts/experiments/RESULTS.md)."""

from __future__ import annotations

from dataclasses import replace

from amberwatch.model.augment import AugmentConfig
from amberwatch.model.network import NetConfig
from amberwatch.model.train import TrainConfig


def default_config(*, epochs: int | None = None, members: int | None = None) -> TrainConfig:
    """The recipe of the bundled model (and of `amberwatch train`), optionally with fewer epochs/members."""
    config = TrainConfig(net=NetConfig(widths=(16, 32, 48, 64), downsample=2, window_cells=5),
                         augment=AugmentConfig(), crop_px=160, epochs=20, members=1)
    if epochs is not None:
        config = replace(config, epochs=epochs)
    if members is not None:
        config = replace(config, members=members)
    return config
