"""The backbone exported to ONNX Runtime for scanning: the same maths, about twice as fast per pixel on one core.

Only inputs whose sides are multiples of 32 go through it (their TF-same paddings are constant, so
each one folds into its convolution); anything else uses the torch backbone. The export is made
once per process from the loaded weights, so no second copy of the weights is stored or shipped.
A model may also carry int8 activation ranges (a few KB, from calibration when it was trained):
the export is then quantized statically (ORT QDQ, ~2.2x faster again) in the same process.
Built models are kept on disk (``built_cache_dir``), keyed by everything that shapes them, so a scan's
workers start in a second instead of exporting and quantizing again (~3 s each).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import io
import json
import logging
import os
import sys
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from amberwatch.errors import ModelError
from amberwatch.model import backbone as backbone_module
from amberwatch.model.backbone import INPUT_MULTIPLE_PX, Backbone, ConvAct, same_pad_1d

# How the backbone is quantized: uint8 activations and symmetric per-channel int8 weights, each channel's scale the
# smallest at which no two weights an x86 kernel multiplies into one int16 can sum past 128 (pair_safe_scales). x86
# CPUs without VNNI multiply u8 by s8 with VPMADDUBSW, whose int16 sum of two products saturates with plain 8-bit
# weights, so those CPUs gave other maps; with pair-safe scales (about 1.2x the plain ones, where 7-bit weights would
# be 2x) no pair overflows, the integer maths is exact everywhere, and maps are bit-identical on AVX2-only and
# AVX-512 VNNI CPUs (tests/model/test_int8_cpus.py, RESULTS.md round 10). Depthwise convolutions keep plain scales:
# their kernels widen to 16 bits first. Leaving a layer in fp32 would break the exactness (fp32 kernels round
# differently per CPU, and requantizing spreads it).
QUANTIZATION = "u8s8-pairsafe"
PIXEL_ZERO = 127.0  # the backbone's input is (x - 127) / 128; an int8 backbone quantizes it around 127 as well
_SESSIONS: dict[tuple, OnnxBackbone] = {}
_EXPORTS: dict[str, object] = {}  # backbone digest -> its fp32 ONNX ModelProto
_LOCK = threading.Lock()
_EXPORT_LOCK = threading.Lock()


class _FixedPadConvAct(nn.Module):
    """A conv with the TF-same padding of inputs divisible by its stride: symmetric pads go into the conv."""

    def __init__(self, conv: nn.Conv2d, act: bool) -> None:
        super().__init__()
        k, s = conv.kernel_size[0], conv.stride[0]
        before, after = same_pad_1d(s, k, s)  # the same for every side divisible by the stride
        self.conv = copy.deepcopy(conv)
        if before == after:
            self.conv.padding = (before, before)
            self.pad = None
        else:  # exported as a Pad node, folded into the Conv afterwards
            self.pad = (before, after, before, after)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad is not None:
            x = F.pad(x, self.pad)
        x = self.conv(x)
        return F.relu6(x) if self.act else x


class _Export(nn.Module):
    """The backbone's stage_maps with constant paddings, for tracing."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.inner = copy.deepcopy(backbone)
        for name, module in list(self.inner.named_modules()):
            if isinstance(module, ConvAct):
                parent = self.inner.get_submodule(name.rsplit(".", 1)[0]) if "." in name else self.inner
                setattr(parent, name.rsplit(".", 1)[-1], _FixedPadConvAct(module.conv, module.act))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.inner.stage_maps(x))


def _fold_pads(model) -> None:
    """Move every constant-zero Pad that feeds one Conv into that Conv's own (asymmetric) pads."""
    from onnx import helper, numpy_helper

    graph = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for node in list(graph.node):
        if node.op_type != "Pad":
            continue
        pads = consts.get(node.input[1])
        value = consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        users = consumers.get(node.output[0], [])
        if pads is None or (value is not None and float(value) != 0.0) or len(users) != 1 or users[0].op_type != "Conv":
            continue
        p = [int(v) for v in pads]
        conv = users[0]
        old = next((a for a in conv.attribute if a.name == "pads"), None)
        base = list(old.ints) if old is not None else [0, 0, 0, 0]
        if old is not None:
            conv.attribute.remove(old)
        # ONNX Pad lists begins then ends for N, C, H, W; Conv pads are H_begin, W_begin, H_end, W_end.
        conv.attribute.append(
            helper.make_attribute("pads", [base[0] + p[2], base[1] + p[3], base[2] + p[6], base[3] + p[7]])
        )
        conv.input[0] = node.input[0]
        graph.node.remove(node)
    used = {name for node in graph.node for name in node.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)


def _fp32_model(backbone: Backbone):
    """The backbone's stage_maps as an fp32 ONNX ModelProto, exported once per process (callers must not edit it)."""
    with _EXPORT_LOCK:  # not _LOCK: onnx_backbone holds that one while it builds a session from the export
        model = _EXPORTS.get(backbone.digest)
        if model is None:
            model = _export(backbone)
            _EXPORTS.clear()
            _EXPORTS[backbone.digest] = model
    return model


def _export(backbone: Backbone):
    """The backbone's stage_maps as an fp32 ONNX ModelProto, TF-same paddings folded into the convolutions."""
    import onnx  # pinned dependencies, imported when a scan first needs them (not on every CLI start)
    import onnxruntime as ort

    buf = io.BytesIO()
    sample = torch.zeros(1, 3, 2 * INPUT_MULTIPLE_PX, 2 * INPUT_MULTIPLE_PX)
    names = [f"stage{i}" for i in range(4)]
    axes = {"x": {0: "n", 2: "h", 3: "w"}, **{n: {0: "n", 2: f"{n}_h", 3: f"{n}_w"} for n in names}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on shape inference and Slice folding
        torch.onnx.export(
            _Export(backbone).eval(),
            (sample,),
            buf,
            dynamo=False,
            opset_version=17,
            input_names=["x"],
            output_names=names,
            dynamic_axes=axes,
            do_constant_folding=True,
        )
    # ORT's basic pass folds the exporter's pad-size arithmetic into constants; then each Pad joins its Conv.
    with tempfile.TemporaryDirectory(prefix="amberwatch-onnx-") as tmp:
        basic = ort.SessionOptions()
        basic.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        basic.log_severity_level = 3
        basic.optimized_model_filepath = str(Path(tmp) / "basic.onnx")
        ort.InferenceSession(buf.getvalue(), basic, providers=["CPUExecutionProvider"])
        model = onnx.load(basic.optimized_model_filepath)
    _fold_pads(model)
    return model


class _Arrays:
    """A CalibrationDataReader over float NCHW arrays."""

    def __init__(self, arrays: list[np.ndarray]) -> None:
        self._it = iter([{"x": a} for a in arrays])

    def get_next(self) -> dict | None:
        return next(self._it, None)


def pair_safe_scales(weight: np.ndarray) -> np.ndarray:
    """Per output channel of a conv weight (O, I, kh, kw), the smallest int8 scale at which any two weights an x86
    u8s8 kernel sums into one int16 stay within 128 in magnitude together (with uint8 activations up to 255, no
    saturation). A 1x1 conv's GEMM pairs input channels 2i and 2i+1; other kernels, any two of the same sign."""
    flat = weight.reshape(weight.shape[0], -1).astype(np.float64)
    largest = np.abs(flat).max(axis=1)
    if weight.shape[2:] == (1, 1):
        even = np.pad(flat, ((0, 0), (0, flat.shape[1] % 2)))
        a, b = even[:, 0::2], even[:, 1::2]
        pair = np.where(np.sign(a) == np.sign(b), np.abs(a) + np.abs(b), 0.0).max(axis=1)
    else:
        pos = np.sort(np.where(flat > 0, flat, 0.0), axis=1)[:, -2:].sum(axis=1)
        neg = np.sort(np.where(flat < 0, -flat, 0.0), axis=1)[:, -2:].sum(axis=1)
        pair = np.maximum(pos, neg)
    return np.maximum(np.maximum(largest, pair), 1e-12) / 127.0


def _weight_overrides(model) -> dict[str, list[dict]]:
    """ORT TensorQuantOverrides giving every non-depthwise conv weight its pair-safe per-channel scales."""
    from onnx import numpy_helper

    weights = {i.name: i for i in model.graph.initializer}
    out = {}
    for node in model.graph.node:
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if node.op_type == "Conv" and group == 1 and node.input[1] in weights:
            scales = pair_safe_scales(numpy_helper.to_array(weights[node.input[1]]))
            zero = np.array(0, dtype=np.int8)
            out[node.input[1]] = [
                {"axis": 0, "scale": np.array(s, dtype=np.float32), "zero_point": zero} for s in scales
            ]
    return out


def _quantize(model, reader: _Arrays | None, cache: Path, pixels: bool = True):
    """ORT static int8 of model as QUANTIZATION says (QDQ, uint8 activations, per-channel weights); ranges from
    cache or reader; uint8 pixels in when its input chain allows (pixels=False: float x in, as quantized)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    out = cache.with_name("int8.onnx")
    logging.disable(logging.WARNING)  # ORT logs advice on pre-processing to the root logger on every call
    try:
        quantize_static(
            copy.deepcopy(model),  # quantize_static may point the model it is given at temporary weight files
            out,
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=False,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            calibration_cache_path=cache,
            extra_options={"TensorQuantOverrides": _weight_overrides(model)},  # QUANTIZATION: the same on every CPU
        )
    finally:
        logging.disable(logging.NOTSET)
    quantized = onnx.load(str(out))
    if pixels:
        _pixel_input(quantized)
    return quantized


def _pixel_input(model) -> None:
    """Give a quantized backbone its input as uint8 NHWC pixels when its input chain is the identity on them.

    The chain x -> Sub 127 -> QuantizeLinear -> DequantizeLinear -> Mul 1/128 -> QuantizeLinear gives back the pixel
    value of every integer x in 0..255 (scales 1 and 1/128, zero points 127), so a Transpose of the pixels replaces
    it: the same stem input bit for bit, without the float image, its element-wise passes and the layout Transpose
    ONNX Runtime puts before the first int8 convolution (RESULTS.md round 13). Other chains are left as they are.
    """
    from onnx import TensorProto, helper

    graph = model.graph
    chain = _input_chain(graph, ("Sub", "QuantizeLinear", "DequantizeLinear", "Mul", "QuantizeLinear"))
    if chain is None or not _is_identity_on_pixels(graph, chain):
        return
    pixels = helper.make_tensor_value_info("pixels", TensorProto.UINT8, ["n", "h", "w", 3])
    to_nchw = helper.make_node("Transpose", ["pixels"], [chain[-1].output[0]], perm=[0, 3, 1, 2], name="pixels_nchw")
    for node in chain:
        graph.node.remove(node)
    graph.node.insert(0, to_nchw)
    graph.input.remove(graph.input[0])
    graph.input.insert(0, pixels)
    while dead := [n for n in graph.node if not any(_used(graph, o) for o in n.output)]:
        for node in dead:
            graph.node.remove(node)
    for init in [i for i in graph.initializer if not _used(graph, i.name)]:
        graph.initializer.remove(init)


def _used(graph, name: str) -> bool:
    return any(name in node.input for node in graph.node) or any(o.name == name for o in graph.output)


def _input_chain(graph, ops: tuple[str, ...]) -> list | None:
    """The nodes from the graph's input on, each the only user of the one before, if their types are ops."""
    chain, name = [], graph.input[0].name
    for op in ops:
        users = [node for node in graph.node if name in node.input]
        if len(users) != 1 or users[0].op_type != op:
            return None
        chain.append(users[0])
        name = users[0].output[0]
    return chain


def _is_identity_on_pixels(graph, chain: list) -> bool:
    """Whether Sub, Q, DQ, Mul (by a dequantized constant), Q give every integer 0..255 back, each product within
    1e-3 of its integer (so float32 kernels, whatever their rounding, land on it too)."""
    from onnx import numpy_helper

    values = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t).astype(np.float64)
        elif node.op_type == "DequantizeLinear" and all(i in values and values[i].size == 1 for i in node.input[:3]):
            q, scale, zero = (values[i] for i in node.input[:3])
            values[node.output[0]] = (q - zero) * scale
    sub, q1, dq1, mul, q2 = chain
    others = [i for i in mul.input if i != dq1.output[0]]
    needed = [sub.input[1], *q1.input[1:3], *q2.input[1:3], *others]
    if len(others) != 1 or any(name not in values or values[name].size != 1 for name in needed):
        return False
    shift, (s1, z1), (s2, z2), factor = (
        float(values[sub.input[1]]),
        (float(values[q1.input[1]]), float(values[q1.input[2]])),
        (float(values[q2.input[1]]), float(values[q2.input[2]])),
        float(values[others[0]]),
    )
    if shift != PIXEL_ZERO or (s1, z1) != (1.0, PIXEL_ZERO):  # OnnxBackbone.stage_maps takes floats as this chain
        return False
    x = np.arange(256, dtype=np.float64)
    first = np.clip(np.rint(x - shift) + z1, 0, 255)
    product = (first - z1) * s1 * factor / s2
    near = np.abs(product - np.rint(product)).max() < 1e-3
    return bool(near and np.array_equal(np.clip(np.rint(product) + z2, 0, 255), x))


def int8_ranges(backbone: Backbone, images: list[np.ndarray]) -> dict[str, list[float]]:
    """Activation ranges {tensor: [min, max]} of the backbone on HxWx3 uint8 images (sides multiples of 32).

    Stored in a model file, they rebuild the same int8 backbone in any process without the images. The model
    quantized here is that same one, so it is kept as this process's int8 twin for these ranges.
    """
    arrays = [np.ascontiguousarray(im.transpose(2, 0, 1)[None], dtype=np.float32) for im in images]
    with tempfile.TemporaryDirectory(prefix="amberwatch-int8-") as tmp:
        cache = Path(tmp) / "ranges.json"
        quantized = _quantize(_fp32_model(backbone), _Arrays(arrays), cache)
        data = json.loads(cache.read_text())["data"]
    ranges = {name: [float(v["lowest"]["data"][0]), float(v["highest"]["data"][0])] for name, v in data.items()}
    twin = OnnxBackbone(backbone, threads=max(1, torch.get_num_threads()), ranges=ranges, quantized=quantized)
    with _LOCK:
        _keep(_session_key(backbone, ranges), twin)
    return ranges


def _int8_model(model, ranges: dict[str, list[float]], pixels: bool = True):
    """The fp32 model quantized with stored ranges (no calibration data; pixels as _quantize's); ModelError if
    they do not fit it."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData, save_tensors_data

    tensors = {o for node in model.graph.node for o in node.output} | {i.name for i in model.graph.input}
    missing = sorted(set(ranges) - tensors)
    if missing or not ranges:
        raise ModelError(f"int8 ranges name tensors the exported backbone lacks: {missing[:3]} (re-export changed?)")
    data = {
        name: TensorData(lowest=np.float32(lo), highest=np.float32(hi)) for name, (lo, hi) in sorted(ranges.items())
    }
    with tempfile.TemporaryDirectory(prefix="amberwatch-int8-") as tmp:
        cache = Path(tmp) / "ranges.json"
        save_tensors_data(TensorsData(CalibrationMethod.MinMax, data), cache)
        return _quantize(model, None, cache, pixels)


class OnnxBackbone:
    """stage_maps of a Backbone through ONNX Runtime (one intra-op thread per worker process), fp32 or int8."""

    def __init__(
        self, backbone: Backbone, threads: int = 1, ranges: dict[str, list[float]] | None = None, quantized=None
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # ORT's notes on removed initializers are not the user's concern
        providers = ["CPUExecutionProvider"]
        data = model_bytes(backbone, ranges, quantized)  # ranges that do not fit fail here, once
        try:
            self._session = ort.InferenceSession(data, options, providers=providers)
        except Exception:  # a damaged file in the cache: build it again
            if quantized is not None:
                raise
            data = model_bytes(backbone, ranges, fresh=True)
            self._session = ort.InferenceSession(data, options, providers=providers)
        self.digest = backbone.digest
        self.int8 = ranges is not None
        self._input = self._session.get_inputs()[0].name  # "pixels" (uint8 NHWC, int8 backbones) or "x"

    def stage_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Float NCHW 0..255 RGB, sides multiples of 32 -> the 4 stage maps (as torch tensors)."""
        _check_sides(*x.shape[2:])
        if self._input == "pixels":  # what the input chain it replaced made of floats: round(x - 127) + 127
            q = torch.round(x - PIXEL_ZERO).add_(PIXEL_ZERO).clamp_(0, 255).to(torch.uint8)
            return self._run(q.permute(0, 2, 3, 1).contiguous().numpy())
        return self._run(np.ascontiguousarray(x.numpy(), dtype=np.float32))

    def pixel_stage_maps(self, pixels: np.ndarray) -> list[torch.Tensor]:
        """HxWx3 uint8 RGB, sides multiples of 32 -> the 4 stage maps of a batch of one (as torch tensors)."""
        _check_sides(*pixels.shape[:2])
        if self._input == "pixels":
            return self._run(np.ascontiguousarray(pixels)[None])
        return self._run(np.ascontiguousarray(pixels.transpose(2, 0, 1), np.float32)[None])

    def _run(self, arr: np.ndarray) -> list[torch.Tensor]:
        return [torch.from_numpy(o) for o in self._session.run(None, {self._input: arr})]


def _check_sides(h: int, w: int) -> None:
    if h % INPUT_MULTIPLE_PX or w % INPUT_MULTIPLE_PX:
        raise ModelError(f"the ONNX backbone needs sides that are multiples of {INPUT_MULTIPLE_PX}, got {h}x{w}")


def built_cache_dir() -> Path:
    """Where built ONNX backbones are kept: $AMBERWATCH_CACHE_DIR/onnx, else amberwatch/onnx in the user's cache."""
    root = os.environ.get("AMBERWATCH_CACHE_DIR")
    if not root:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "amberwatch"
    return Path(root) / "onnx"


def built_path(backbone: Backbone, ranges: dict[str, list[float]] | None) -> Path:
    """The cache file of the backbone built for ranges (None: fp32), named by what shapes it."""
    import onnx
    import onnxruntime as ort

    what = [backbone.identity, _code_digest(), torch.__version__, onnx.__version__, ort.__version__]
    what.append(None if ranges is None else sorted([k, *v] for k, v in ranges.items()))
    key = hashlib.sha256(json.dumps(what).encode()).hexdigest()[:32]
    return built_cache_dir() / f"{'fp32' if ranges is None else 'int8'}-{key}.onnx"


@functools.cache
def _code_digest() -> str:
    """sha256 of the code that builds backbones: an edited export or quantization never reuses an old file."""
    sources = (backbone_module, sys.modules[__name__])
    return hashlib.sha256(b"".join(Path(m.__file__).read_bytes() for m in sources)).hexdigest()


def model_bytes(
    backbone: Backbone, ranges: dict[str, list[float]] | None, quantized=None, fresh: bool = False
) -> bytes:
    """The serialized ONNX backbone for ranges (None: fp32): from the cache on disk, else built and kept there."""
    path = built_path(backbone, ranges)
    if quantized is None and not fresh:
        data = _cached(path)
        if data is not None:
            return data
    if ranges is None:
        model = _fp32_model(backbone)
    else:
        model = quantized if quantized is not None else _int8_model(_fp32_model(backbone), ranges)
    data = model.SerializeToString()
    _store(path, data)
    return data


def _digest_path(path: Path) -> Path:
    """The file beside a cached backbone holding its sha256 (flipped weights still parse: only this catches them)."""
    return path.with_name(path.name + ".sha256")


def _cached(path: Path) -> bytes | None:
    """A cached backbone's bytes if path and its digest file are regular files (never a FIFO, which would block,
    or a folder) and the bytes match the digest; None means build it."""
    digest = _digest_path(path)
    if not (path.is_file() and digest.is_file()):
        return None
    with contextlib.suppress(OSError, UnicodeDecodeError):
        data = path.read_bytes()
        if data and hashlib.sha256(data).hexdigest() == digest.read_text().strip():
            return data
    return None


def _store(path: Path, data: bytes) -> None:
    """Write data to path, then its sha256 beside it, each atomically; a cache that cannot be written only costs
    the next process the build."""
    for target, content in ((path, data), (_digest_path(path), hashlib.sha256(data).hexdigest().encode())):
        part = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, part = tempfile.mkstemp(dir=path.parent, prefix=f"{target.name}.", suffix=".part")
            with os.fdopen(fd, "wb") as f:
                f.write(content)
            os.replace(part, target)
        except OSError:
            if part is not None:
                with contextlib.suppress(OSError):
                    os.unlink(part)
            return


def onnx_backbone(backbone: Backbone, ranges: dict[str, list[float]] | None = None) -> OnnxBackbone:
    """The ONNX Runtime twin of a backbone (int8 with stored ranges), exported once per process and ranges."""
    key = _session_key(backbone, ranges)
    with _LOCK:
        fast = _SESSIONS.get(key)
        if fast is None:
            fast = _keep(key, OnnxBackbone(backbone, threads=max(1, torch.get_num_threads()), ranges=ranges))
    return fast


def _session_key(backbone: Backbone, ranges: dict[str, list[float]] | None) -> tuple:
    return backbone.digest, None if ranges is None else tuple(sorted((k, *v) for k, v in ranges.items()))


def _keep(key: tuple, fast: OnnxBackbone) -> OnnxBackbone:
    """Remember a twin under key (caller holds _LOCK): an fp32 and an int8 twin at most."""
    _SESSIONS.pop(key, None)
    if len(_SESSIONS) >= 2:
        _SESSIONS.pop(next(iter(_SESSIONS)))
    _SESSIONS[key] = fast
    return fast
