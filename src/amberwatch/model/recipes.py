"""The training recipes chosen by block-grouped CV and the season-transfer check (scripts/experiments/RESULTS.md)."""

from __future__ import annotations

from dataclasses import replace

from amberwatch.errors import InvalidInputError
from amberwatch.model.augment import AugmentConfig
from amberwatch.model.network import NetConfig
from amberwatch.model.pretrained import PretrainedRecipe
from amberwatch.model.train import Recipe, TrainConfig

# Stronger colour/season jitter for the second ensemble member (diversity).
STRONG_AUGMENT = AugmentConfig(
    brightness=0.45, contrast=0.45, saturation=0.8, hue_deg=45, channel_gain=0.15, grayscale_p=0.4
)


def default_config(*, epochs: int | None = None, members: int | None = None) -> list[TrainConfig]:
    """The bundled model's recipe: 2 local-contrast-normalised CNNs at 0.76 m/px (one with stronger colour jitter),
    60 epochs, a quarter of every batch being pits pasted onto negatives of other places and seasons.

    members=1 keeps only the first network; epochs overrides the epochs (quick runs).
    """
    base = TrainConfig(
        net=NetConfig(widths=(16, 32, 48, 64), downsample=2, window_cells=5, local_norm_px=31),
        augment=AugmentConfig(),
        crop_px=160,
        # pit pasting keeps longer training from over-fitting: block CV AP 0.72 / 0.78 / 0.83 at 30 / 45 / 60
        epochs=60,
        paste_p=0.25,
    )
    configs = [base, replace(base, augment=STRONG_AUGMENT)]
    if epochs is not None:
        configs = [replace(c, epochs=epochs) for c in configs]
    if members is not None:
        configs = [configs[i % len(configs)] for i in range(members)]
    return configs


RECIPES = ("pretrained", "pretrained-linear", "cnn")


def pretrained_recipe(*, feature_cache: str | None = None, head: str = "mlp") -> PretrainedRecipe:
    """The default recipe: frozen EfficientNet-Lite0 features and an MLP head (scripts/experiments/RESULTS.md)."""
    if head == "linear":  # the round-5 recipe: logistic regression on the means and stages 3 and 5's deviations
        return PretrainedRecipe(feature_cache=feature_cache, head=head, wide_std_stages=())
    return PretrainedRecipe(feature_cache=feature_cache, head=head)


def recipe_by_name(
    name: str, *, epochs: int | None = None, members: int | None = None, feature_cache: str | None = None
) -> Recipe:
    """The recipe called `name` (one of RECIPES); epochs and members apply to the CNN only."""
    if name in ("pretrained", "pretrained-linear"):
        return pretrained_recipe(feature_cache=feature_cache, head="linear" if name.endswith("linear") else "mlp")
    if name == "cnn":
        return default_config(epochs=epochs, members=members)
    raise InvalidInputError(f"unknown recipe {name!r} (expected one of {', '.join(RECIPES)})")
