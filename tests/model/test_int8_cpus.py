"""The int8 backbone gives the same maps on every CPU: an AVX2-only EPYC (no VNNI) is emulated with qemu-user.

x86 CPUs without VNNI multiply uint8 activations by int8 weights with VPMADDUBSW, whose int16 sum of two products
saturates with 8-bit weights. The scan's quantization (backbone_onnx.QUANTIZATION) keeps such sums in range, so the
integer maths is exact and the emulated CPU agrees bit for bit; the 8-bit control shows the emulation does reach
the saturating kernel (it differs from an SSE-only CPU there, whatever CPU runs the test).
"""

from __future__ import annotations

import copy
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import amberwatch.model as model
from amberwatch.model.backbone_onnx import _fp32_model, model_bytes
from tests.fixtures.cpu_mask import avx2_only_env, cpuid_faulting

QEMU = shutil.which("qemu-x86_64")
NO_VNNI_CPU = "EPYC-Rome"  # AVX2, no AVX-512, no VNNI: this project's own kind of machine
SSE_CPU = "Nehalem"  # SSE4.2 only: ONNX Runtime's u8s8 kernels widen to 16 bits there, so they cannot saturate
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(platform.machine() != "x86_64", reason="x86 kernels"),
]
needs_qemu = pytest.mark.skipif(QEMU is None, reason="needs qemu-user (apt-get install qemu-user)")

RUN = """
import sys
import numpy as np
from numpy._core._multiarray_umath import __cpu_features__ as cpu
import onnxruntime as ort
options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.log_severity_level = 3
session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
x = np.load(sys.argv[2])
name = session.get_inputs()[0].name  # "pixels": uint8 NHWC (backbone_onnx._pixel_input)
feed = np.ascontiguousarray(x.transpose(0, 2, 3, 1).astype(np.uint8)) if name == "pixels" else x
np.savez(sys.argv[3], *session.run(None, {name: feed}))
print("VNNI" if cpu.get("AVX512VNNI") else "no VNNI")
"""


def _maps(
    onnx_path: Path, x_path: Path, out: Path, emulate: str | None, env: dict[str, str] | None = None
) -> list[np.ndarray]:
    """The stage maps of the model on the input, run in a fresh interpreter (under qemu when emulating a CPU; with
    env's LD_PRELOAD when masking this CPU's features)."""
    cmd = [sys.executable, "-c", RUN, str(onnx_path), str(x_path), str(out)]
    if emulate:
        cmd = [QEMU, "-cpu", emulate, *cmd]
    done = subprocess.run(cmd, check=True, capture_output=True, timeout=600, env=env, text=True)
    with np.load(out) as d:
        maps = [d[k] for k in sorted(d.files, key=lambda k: int(k.split("_")[1]))]
    if env is not None:
        assert done.stdout.strip() == "no VNNI", done.stdout  # numpy, like ONNX Runtime, saw the masked CPUID
    return maps


def _eight_bit_weights(clf) -> bytes:
    """The same backbone and ranges quantized with full-range 8-bit weights (the quantization before 7-bit)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    data = {k: TensorData(lowest=np.float32(lo), highest=np.float32(hi)) for k, (lo, hi) in clf.int8.ranges.items()}
    with tempfile.TemporaryDirectory() as tmp:
        cache, out = Path(tmp) / "ranges.json", Path(tmp) / "int8.onnx"
        save_tensors_data(TensorsData(CalibrationMethod.MinMax, data), cache)
        quantize_static(
            copy.deepcopy(_fp32_model(clf.backbone)),
            out,
            None,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=False,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            calibration_cache_path=cache,
        )
        return out.read_bytes()


def _backbones(tmp_path: Path) -> tuple[Path, Path]:
    """The bundled model's first check chip as input x.npy, its shipped int8 backbone and the 8-bit control."""
    clf = model.load()
    x = np.ascontiguousarray(clf.int8.check_images[0].transpose(2, 0, 1)[None], dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    shipped, control = tmp_path / "w7.onnx", tmp_path / "w8.onnx"
    shipped.write_bytes(model_bytes(clf.backbone, clf.int8.ranges))
    control.write_bytes(_eight_bit_weights(clf))
    return shipped, control


@pytest.mark.skipif(not cpuid_faulting(), reason="needs CPUID faulting (cpuid_fault in /proc/cpuinfo)")
def test_int8_maps_are_bit_identical_on_avx2_kernels_run_natively(tmp_path):
    """The same check at full speed: this CPU's VNNI and AVX-512 hidden from CPUID (tests/fixtures/cpu_mask.py)."""
    shipped, control = _backbones(tmp_path)
    env = avx2_only_env(tmp_path)
    x = tmp_path / "x.npy"
    native, masked = (_maps(shipped, x, tmp_path / f"w7-{tag}.npz", None, e) for tag, e in (("n", None), ("m", env)))
    for here, there in zip(native, masked):
        np.testing.assert_array_equal(here, there)
    if "avx512_vnni" in Path("/proc/cpuinfo").read_text():  # VNNI is exact for any weights: AVX2 kernels are not
        w8 = [_maps(control, x, tmp_path / f"w8-{tag}.npz", None, e) for tag, e in (("n", None), ("m", env))]
        assert any(not np.array_equal(a, b) for a, b in zip(*w8)), "8-bit weights agree: no saturating kernel ran"


@needs_qemu
def test_int8_maps_are_bit_identical_on_a_cpu_without_vnni(tmp_path):
    shipped, control = _backbones(tmp_path)
    maps = {
        (name, cpu): _maps(path, tmp_path / "x.npy", tmp_path / f"{name}-{cpu}.npz", cpu)
        for name, path, cpus in (("w7", shipped, (None, NO_VNNI_CPU, SSE_CPU)), ("w8", control, (NO_VNNI_CPU, SSE_CPU)))
        for cpu in cpus
    }
    for cpu in (NO_VNNI_CPU, SSE_CPU):
        for here, there in zip(maps[("w7", None)], maps[("w7", cpu)]):
            np.testing.assert_array_equal(here, there)
    differ = [not np.array_equal(a, b) for a, b in zip(maps[("w8", NO_VNNI_CPU)], maps[("w8", SSE_CPU)])]
    assert any(differ), "8-bit weights agree too: the emulated CPU did not take the saturating kernel"
