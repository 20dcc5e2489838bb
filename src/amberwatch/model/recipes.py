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

# The triage model (scan --triage-zoom 17): the recipe on the examples downsampled by 2 (what a z17 tile shows).
TRIAGE_SCALE = 0.5
# Its scored window matches the examples' extent at the working resolution, as the default's 15 cells do at 0.38 m/px:
# the crops' median side (~214 px) halved is ~107 px, 7 cells of 16 px (15 cells scored every z17 window on 4x the
# ground a chip covered: scores collapsed to ~0 everywhere on the served pyramid, RESULTS.md round 14).
TRIAGE_WINDOW_CELLS = 7
# Its threshold: the highest keeping block-CV recall >= 0.8 on the crops (crop recall understates a pit field's, which
# spans several windows and keeps a ring of neighbours; at 0.97 the threshold is ~1e-6 and keeps every tile).
TRIAGE_MIN_RECALL = 0.8
TRIAGE_METADATA = {"role": "triage", "zoom_offset": -1}  # what marks a model file as a triage model


def pretrained_recipe(*, feature_cache: str | None = None, head: str = "mlp") -> PretrainedRecipe:
    """The default recipe: frozen EfficientNet-Lite0 features and an MLP head (scripts/experiments/RESULTS.md)."""
    if head == "linear":  # the round-5 recipe: logistic regression on the means and stages 3 and 5's deviations
        return PretrainedRecipe(feature_cache=feature_cache, head=head, wide_std_stages=())
    return PretrainedRecipe(feature_cache=feature_cache, head=head)


def triage_recipe(recipe: Recipe) -> PretrainedRecipe | None:
    """The recipe of the triage model that goes with a model of ``recipe``: the same backbone and head at half the
    examples' resolution with a window of TRIAGE_WINDOW_CELLS; None for the CNN recipe (no triage model of its own)."""
    if not isinstance(recipe, PretrainedRecipe):
        return None
    return replace(recipe, scale=recipe.scale * TRIAGE_SCALE, window_cells=TRIAGE_WINDOW_CELLS)


def recipe_by_name(
    name: str, *, epochs: int | None = None, members: int | None = None, feature_cache: str | None = None
) -> Recipe:
    """The recipe called `name` (one of RECIPES); epochs and members apply to the CNN only."""
    if name in ("pretrained", "pretrained-linear"):
        return pretrained_recipe(feature_cache=feature_cache, head="linear" if name.endswith("linear") else "mlp")
    if name == "cnn":
        return default_config(epochs=epochs, members=members)
    raise InvalidInputError(f"unknown recipe {name!r} (expected one of {', '.join(RECIPES)})")
