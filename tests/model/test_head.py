"""The head on pooled features: linear and MLP, training, the file format, and the score map applying it per window."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score

import amberwatch.model as model
from amberwatch.errors import InvalidInputError, ModelError
from amberwatch.model.backbone import FEATURE_DIM, STAGE_STRIDES
from amberwatch.model.head import Head, MlpSettings, blend_heads, fit_linear, fit_mlp, fit_mlp_parts
from amberwatch.model.pretrained import PretrainedClassifier, feature_columns, std_columns
from amberwatch.model.recipes import pretrained_recipe


@pytest.fixture(scope="module")
def bundled() -> PretrainedClassifier:
    return model.load()


def _random_mlp(n_features: int, hidden: int = 6, seed: int = 0) -> Head:
    rng = np.random.default_rng(seed)
    return Head(
        rng.normal(0, 0.05, (hidden, n_features)).astype(np.float32),
        rng.normal(0, 0.5, hidden).astype(np.float32),
        rng.normal(0, 1.0, hidden).astype(np.float32),
        -0.3,
        relu=True,
    )


def _separable(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features on very different scales and offsets (the scaler must be folded in), labels from two of them."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, 12))
    y = ((x[:, 0] + x[:, 1] ** 2) > 1.0).astype(np.int64)
    return (x * np.geomspace(1e-3, 1e3, 12) + 50.0).astype(np.float32), y


def test_linear_head_is_a_dot_product_and_keeps_the_v2_file_keys():
    rng = np.random.default_rng(1)
    w, x = rng.normal(size=7).astype(np.float32), rng.normal(size=(5, 7)).astype(np.float32)
    head = Head.linear(w, 0.25)
    np.testing.assert_allclose(head.logits(x), x @ w + 0.25, rtol=1e-6)
    payload = head.to_payload()
    assert set(payload) == {"head_weight", "head_bias"}
    again = Head.from_payload(payload)
    np.testing.assert_array_equal(again.logits(x), head.logits(x))


def test_head_shapes_that_do_not_fit_are_model_errors():
    with pytest.raises(ModelError, match="head shapes do not fit"):
        Head(np.zeros((3, 4), np.float32), np.zeros(2, np.float32), np.zeros(3, np.float32), 0.0, relu=True)
    with pytest.raises(InvalidInputError, match="unknown head 'forest'"):
        replace(model.load().recipe, head="forest")


def test_mlp_learns_a_nonlinear_rule_on_raw_features_and_is_reproducible():
    x, y = _separable()
    xt, yt = _separable(seed=1)
    state = torch.random.get_rng_state()
    settings = MlpSettings(epochs=100, max_lr=1e-2, networks=2)
    head = fit_mlp(x, y, settings)
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's generator is left alone
    assert head.relu and head.hidden == settings.hidden * settings.networks
    mlp_ap = average_precision_score(yt, head.logits(xt))
    linear_ap = average_precision_score(yt, fit_linear(x, y, 1.0).logits(xt))
    assert mlp_ap > 0.95 and mlp_ap > linear_ap + 0.05  # x1 squared: no linear rule gets it
    np.testing.assert_array_equal(fit_mlp(x, y, settings).logits(xt), head.logits(xt))
    with pytest.raises(ModelError, match="both labels"):
        fit_mlp(x, np.zeros(len(x), np.int64), settings)


def test_mlp_parts_train_side_by_side_each_on_its_own_columns():
    x, y = _separable()
    xt, yt = _separable(seed=1)
    settings = MlpSettings(epochs=100, max_lr=1e-2, networks=2)
    blind, sighted = np.arange(2, 12), np.arange(12)  # the label hangs on columns 0 and 1 only
    heads = fit_mlp_parts(x, y, [blind, sighted], settings)
    assert [h.n_features for h in heads] == [10, 12] and all(h.hidden == 2 * settings.hidden for h in heads)
    assert average_precision_score(yt, heads[0].logits(xt[:, blind])) < 0.6
    assert average_precision_score(yt, heads[1].logits(xt)) > 0.95
    again = fit_mlp_parts(x, y, [blind, sighted], settings)
    np.testing.assert_array_equal(again[1].logits(xt), heads[1].logits(xt))


def test_blended_heads_weigh_each_part_s_logits_on_its_own_columns():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(9, 10)).astype(np.float32)
    narrow, wide = np.array([0, 1, 2, 5]), np.arange(10)
    a, b = _random_mlp(4, hidden=3, seed=1), _random_mlp(10, hidden=5, seed=2)
    head = blend_heads([(a, narrow), (b, wide)], [0.65, 0.35], 10)
    assert head.hidden == 8 and head.n_features == 10 and head.relu
    expected = 0.65 * a.logits(x[:, narrow]) + 0.35 * b.logits(x)
    np.testing.assert_allclose(head.logits(x), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ModelError, match="1 heads and 2 weights"):
        blend_heads([(a, narrow)], [0.5, 0.5], 10)
    with pytest.raises(ModelError, match="MLP heads only"):
        blend_heads([(a, narrow), (Head.linear(np.ones(10), 0.0), wide)], [0.5, 0.5], 10)
    x, y = _separable()
    with pytest.raises(ModelError, match="part 1 needs columns among the 12 features, got 0"):
        fit_mlp_parts(x, y, [np.arange(12), np.arange(0)], MlpSettings(epochs=1))
    with pytest.raises(ModelError, match="part 0 needs columns among the 12 features, got 2"):
        fit_mlp_parts(x, y, [np.array([3, 12])], MlpSettings(epochs=1))


def test_a_std_stage_no_row_weighs_adds_nothing_to_the_map(bundled):
    """A head with no weight on stage 7's deviations scores as if they were not there."""
    recipe = replace(bundled.recipe, head="mlp", wide_std_stages=(3,))
    n = FEATURE_DIM + len(std_columns(recipe.feature_std_stages))
    head = _random_mlp(n, hidden=4, seed=9)
    stage7 = FEATURE_DIM + len(std_columns(recipe.std_stages))
    blind = replace(head, hidden_w=np.concatenate([head.hidden_w[:, :stage7], 0 * head.hidden_w[:, stage7:]], axis=1))
    narrow = replace(blind, hidden_w=np.ascontiguousarray(blind.hidden_w[:, :stage7]))
    image = np.random.default_rng(8).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    with_stage7 = PretrainedClassifier(blind, recipe).predict_grid(image)
    without = PretrainedClassifier(narrow, replace(recipe, wide_std_stages=())).predict_grid(image)
    np.testing.assert_allclose(with_stage7, without, atol=1e-6)


def test_recipes_refuse_windows_and_halos_the_scan_cannot_make():
    with pytest.raises(InvalidInputError, match=r"window_cells must be 3 mod 4 .* got 13"):
        replace(pretrained_recipe(), window_cells=13)
    assert replace(pretrained_recipe(head="linear"), window_cells=13).window_cells == 13  # no coarse deviations
    with pytest.raises(InvalidInputError, match="halo_px must be a multiple of 32, got 48"):
        replace(pretrained_recipe(), halo_px=48)
    with pytest.raises(InvalidInputError, match=r"wide_weight 1\.5"):
        replace(pretrained_recipe(), wide_weight=1.5)
    with pytest.raises(InvalidInputError, match=r"std stages \(2,\) are not all among \(0, 1\)"):
        feature_columns((2,), (0, 1))


def test_a_wide_part_needs_the_mlp_head():
    with pytest.raises(InvalidInputError, match=r"wide_std_stages \(3,\) need the mlp head"):
        replace(pretrained_recipe(), head="linear")
    assert pretrained_recipe(head="linear").feature_std_stages == (0, 1)
    assert pretrained_recipe().feature_std_stages == (0, 1, 3)


def test_mlp_head_round_trips_through_the_model_file(bundled):
    head = _random_mlp(bundled.head.n_features)
    clf = PretrainedClassifier(head, replace(bundled.recipe, head="mlp"), threshold=0.7)
    again = model.from_bytes(clf.to_bytes(), "mlp file")
    for name in ("hidden_w", "hidden_b", "out_w"):
        np.testing.assert_array_equal(getattr(again.head, name), getattr(head, name))
    assert again.head.out_b == pytest.approx(head.out_b) and again.head.relu
    image = np.random.default_rng(2).integers(0, 255, (128, 160, 3), dtype=np.uint8)
    np.testing.assert_array_equal(again.predict_grid(image), clf.predict_grid(image))


def _window_features(clf: PretrainedClassifier, image: np.ndarray, row: int, col: int) -> np.ndarray:
    """Means and std_stages' deviations of every stage channel over one window of the image's own stage maps."""
    k, cell = clf.recipe.window_cells, clf.cell_px
    half = k // 2
    x = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float()
    means, devs = [], {}
    with torch.inference_mode():
        maps = clf._fast.stage_maps(x)
    for stage, (fmap, stride) in enumerate(zip(maps, STAGE_STRIDES)):
        # Every stage on a grid of 1/cell: fine maps averaged, coarse ones repeated (nearest), as cells see them.
        if stride < cell:
            m1, m2 = F.avg_pool2d(fmap, cell // stride), F.avg_pool2d(fmap * fmap, cell // stride)
        else:
            m1 = F.interpolate(fmap, scale_factor=stride // cell, mode="nearest")
            m2 = m1 * m1
        window = (slice(None), slice(None), slice(row - half, row + half + 1), slice(col - half, col + half + 1))
        mean, square = m1[window].mean(dim=(2, 3))[0], m2[window].mean(dim=(2, 3))[0]
        means.append(mean)
        devs[stage] = (square - mean * mean).clamp_min(0).sqrt()
    parts = [torch.cat(means)] + [devs[s] for s in clf.recipe.feature_std_stages]
    feats = torch.cat(parts).numpy()
    assert feats.shape == (FEATURE_DIM + len(std_columns(clf.recipe.feature_std_stages)),)
    return feats


def _random_blend(recipe) -> Head:
    """A narrow MLP (means and std_stages' deviations) blended with a wide one on all the features."""
    n = FEATURE_DIM + len(std_columns(recipe.feature_std_stages))
    narrow = feature_columns(recipe.std_stages, recipe.feature_std_stages)
    parts = [(_random_mlp(len(narrow), hidden=5, seed=7), narrow), (_random_mlp(n, hidden=4, seed=8), np.arange(n))]
    return blend_heads(parts, [0.6, 0.4], n)


@pytest.mark.parametrize("kind", ["dense", "blend"])
def test_score_map_applies_the_mlp_to_each_window_s_features(bundled, kind):
    """Away from the image's edges, a window's probability is the MLP on that window's pooled features exactly."""
    recipe = replace(bundled.recipe, head="mlp", wide_std_stages=(3,))
    n = FEATURE_DIM + len(std_columns(recipe.feature_std_stages))
    head = _random_mlp(n, hidden=8, seed=3) if kind == "dense" else _random_blend(recipe)
    clf = PretrainedClassifier(head, recipe, threshold=0.5)
    image = np.random.default_rng(4).integers(0, 255, (512, 512, 3), dtype=np.uint8)
    grid = clf.predict_grid(image)
    for row, col in [(8, 8), (16, 11), (23, 23)]:
        expected = 1 / (1 + np.exp(-head.logits(_window_features(clf, image, row, col)[None])[0]))
        assert grid[row, col] == pytest.approx(expected, abs=2e-4)
    # ReLU made a difference: the same layers without it give other probabilities.
    linear_rows = replace(head, relu=False)
    other = PretrainedClassifier(linear_rows, recipe)
    assert float(np.abs(other.predict_grid(image) - grid).max()) > 0.01


def test_example_weights_make_a_few_local_rows_count_and_ones_change_nothing():
    x, y = _separable()
    rng = np.random.default_rng(3)
    local = rng.normal(0, 1, (12, 12))
    local[:, 0] = 3.0  # a place where the rule says mining, but the place's labels say not
    local = (local * np.geomspace(1e-3, 1e3, 12) + 50.0).astype(np.float32)
    xs, ys = np.concatenate([x, local]), np.concatenate([y, np.zeros(12, np.int64)])
    settings = MlpSettings(epochs=60, max_lr=1e-2, networks=1)
    plain = fit_mlp(xs, ys, settings)
    ones = fit_mlp_parts(xs, ys, [np.arange(12)], settings, weights=np.ones(len(ys)))[0]
    np.testing.assert_allclose(ones.logits(local), plain.logits(local), atol=0.02)  # float sums differ
    weights = np.r_[np.ones(len(y)), np.full(12, 30.0)]
    heavy = fit_mlp_parts(xs, ys, [np.arange(12)], settings, weights=weights)[0]
    assert heavy.logits(local).mean() < plain.logits(local).mean() - 1.0
    assert fit_linear(xs, ys, 1.0, weights).logits(local).mean() < fit_linear(xs, ys, 1.0).logits(local).mean()
    with pytest.raises(ModelError, match=r"weights must be 412 finite values >= 0.*\(3,\)"):
        fit_mlp_parts(xs, ys, [np.arange(12)], settings, weights=np.ones(3))
