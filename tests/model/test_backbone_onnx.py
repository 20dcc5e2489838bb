"""The ONNX backbone's on-disk cache: a second process loads what the first built, a damaged file is rebuilt."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import amberwatch.model as model
import amberwatch.model.backbone_onnx as bo
from amberwatch.model import backbone as bb
from tests.fixtures.fifo import finishes


@pytest.fixture(scope="module")
def backbone() -> bb.Backbone:
    return bb.load_backbone()


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("AMBERWATCH_CACHE_DIR", str(tmp_path))
    return tmp_path / "onnx"


def _maps(twin: bo.OnnxBackbone) -> list[torch.Tensor]:
    x = torch.from_numpy(np.random.default_rng(0).uniform(0, 255, (1, 3, 64, 96)).astype(np.float32))
    return twin.stage_maps(x)


def test_a_built_backbone_is_loaded_from_disk_without_exporting(backbone, cache_dir, monkeypatch):
    ranges = bo.int8_ranges(backbone, [np.random.default_rng(1).integers(0, 255, (64, 96, 3), dtype=np.uint8)])
    first = {name: bo.OnnxBackbone(backbone, ranges=r) for name, r in (("fp32", None), ("int8", ranges))}
    files = sorted(p.name for p in cache_dir.glob("*.onnx"))
    assert len(files) == 2 and files[0].startswith("fp32-") and files[1].startswith("int8-")
    assert sorted(p.name for p in cache_dir.iterdir()) == sorted([*files, *(f"{f}.sha256" for f in files)])

    def no_export(_backbone):
        raise AssertionError("exported again")

    monkeypatch.setattr(bo, "_fp32_model", no_export)  # as in a fresh process: only the files can help
    for name, r in (("fp32", None), ("int8", ranges)):
        again = bo.OnnxBackbone(backbone, ranges=r)
        for a, b in zip(_maps(first[name]), _maps(again)):
            assert torch.equal(a, b)
    # Other ranges are another file: they are built, not mixed up with these.
    other = {k: [lo, hi * 2] for k, (lo, hi) in ranges.items()}
    assert bo.built_path(backbone, other) != bo.built_path(backbone, ranges)
    with pytest.raises(AssertionError, match="exported again"):
        bo.OnnxBackbone(backbone, ranges=other)


def test_a_damaged_cache_file_is_rebuilt(backbone, cache_dir):
    exact = bo.OnnxBackbone(backbone)
    path = bo.built_path(backbone, None)
    path.write_bytes(b"not an onnx model")
    rebuilt = bo.OnnxBackbone(backbone)
    for a, b in zip(_maps(exact), _maps(rebuilt)):
        assert torch.equal(a, b)
    assert path.stat().st_size > 1_000_000  # the good model is back on disk


def test_a_cached_file_with_flipped_weights_is_rebuilt(backbone, cache_dir):
    exact = _maps(bo.OnnxBackbone(backbone))
    path = bo.built_path(backbone, None)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2  # inside the weights: ONNX Runtime still loads the file
    data[middle : middle + 2000] = bytes(b ^ 0xFF for b in data[middle : middle + 2000])
    path.write_bytes(bytes(data))
    for a, b in zip(exact, _maps(bo.OnnxBackbone(backbone))):
        assert torch.equal(a, b)
    assert path.read_bytes() != bytes(data)  # the good model is back on disk


def test_an_unwritable_cache_still_builds(backbone, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("AMBERWATCH_CACHE_DIR", str(blocker))
    twin = bo.OnnxBackbone(backbone)
    assert len(_maps(twin)) == 4 and not list(tmp_path.glob("**/*.part"))


def test_a_fifo_or_folder_in_place_of_a_cached_file_is_rebuilt_for_fp32_and_int8(backbone, cache_dir):
    ranges = model.load().int8.ranges  # the bundled model's: the int8 backbone a scan builds
    for r in (None, ranges):
        path = bo.built_path(backbone, r)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)
        twin = finishes(lambda r=r: bo.OnnxBackbone(backbone, ranges=r), path)
        assert twin.int8 == (r is not None) and len(_maps(twin)) == 4
        assert path.is_file() and path.stat().st_size > 1_000_000  # the FIFO was replaced by the built model
    for r in (None, ranges):  # a folder cannot be replaced: built in memory each time, the folder left alone
        path = bo.built_path(backbone, r)
        path.unlink()
        path.mkdir()
        twin = bo.OnnxBackbone(backbone, ranges=r)
        assert twin.int8 == (r is not None) and len(_maps(twin)) == 4 and path.is_dir()


def test_int8_backbone_takes_uint8_pixels_and_gives_the_maps_of_its_float_input_chain_bit_for_bit(backbone, cache_dir):
    """The bundled ranges quantize the input (x - 127) / 128 around 127 with scale 1/128: the identity on pixels,
    so the int8 backbone takes them as they are; ranges where it is not keep the float input."""
    import onnxruntime as ort

    clf = model.load()
    fast = bo.OnnxBackbone(backbone, ranges=clf.int8.ranges)
    plain = bo._int8_model(bo._fp32_model(backbone), clf.int8.ranges, pixels=False)
    session = ort.InferenceSession(plain.SerializeToString(), providers=["CPUExecutionProvider"])
    image = np.random.default_rng(4).integers(0, 256, (96, 256, 3), dtype=np.uint8)
    image[:8] = np.arange(256, dtype=np.uint8)[None, :, None]  # every pixel value in every channel
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32))
    floats = x + torch.from_numpy(np.random.default_rng(5).choice([-0.5, 0.0, 0.25, 0.5], x.shape).astype(np.float32))
    for got in (fast.pixel_stage_maps(image), fast.stage_maps(x)):
        for want, have in zip(session.run(None, {"x": x.numpy()}), got):
            np.testing.assert_array_equal(want, have.numpy())
    for want, have in zip(session.run(None, {"x": floats.numpy()}), fast.stage_maps(floats)):  # ties round as ORT
        np.testing.assert_array_equal(want, have.numpy())
    assert fast._session.get_inputs()[0].name == "pixels"

    dark = bo.int8_ranges(backbone, [np.random.default_rng(1).integers(0, 100, (64, 96, 3), dtype=np.uint8)])
    other = bo.OnnxBackbone(backbone, ranges=dark)
    assert other._session.get_inputs()[0].name == "x"
    for a, b in zip(other.stage_maps(x[..., :64, :96]), other.pixel_stage_maps(image[:64, :96])):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
