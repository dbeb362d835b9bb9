"""Precision that lives in the graph: FP16 casts and explicit INT8 quantization (Q/DQ).

TensorRT 10+ builds strongly typed networks (TensorRT 11 and TensorRT-RTX have no FP16/INT8 builder
flags or INT8 calibrators), so the reduced precision is written into the ONNX graph here and every
consumer (ONNX Runtime, TensorRT, Triton) runs exactly that graph.

- FP16: ``onnxruntime.transformers.float16.convert_float_to_float16`` with ``keep_io_types=True``
  (I/O stay float32, so clients and Triton configs do not change).
- INT8 for TensorRT (:func:`quantize_int8`, the ``int8`` artifact for ``tensorrt_plan``): ONNX
  Runtime's ``quantize_static`` in QDQ format with the settings TensorRT's ONNX parser accepts and
  fuses: symmetric int8 activations and per-channel weights, **float biases** (``QuantizeBias``
  off: TensorRT rejects int32 bias DequantizeLinear), Q/DQ on the conv input and weight and none on
  conv outputs (nothing sits between a conv and its ReLU, or between a conv and the residual Add
  that TensorRT fuses into it); the residual (identity) input of those Adds reads the DequantizeLinear
  that the next block's quantized conv shares, which is the placement TensorRT fuses into an INT8
  conv + add (and the one NVIDIA ModelOpt makes). Then the whole graph is converted to **FP16
  outside the Q/DQ pairs**
  (opset 19: DequantizeLinear with float16 scales outputs float16), because in a strongly typed
  network everything between Q/DQ pairs runs in the scale's type. Only the compute-heavy
  convolutions get Q/DQ (the largest ones that together hold ``mac_coverage`` of the graph's
  convolution multiply-accumulates, never the stem conv on the image or the final conv).
  Calibrated on real images. docs/export.md says why this and not NVIDIA ModelOpt, with numbers.

The INT8 artifact for ONNX Runtime's CPU kernels (U8 activations, the ``int8_cpu`` artifact) is a
different recipe in export/quantize_cpu.py; :data:`INT8_TARGETS` names the targets so the manifest
holds both.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from banet import processing
from banet.spec import NETWORK_INPUT

log = logging.getLogger(__name__)

CALIBRATION_METHODS = ("minmax", "percentile")
DEFAULT_CALIBRATION_METHOD = "percentile"
PERCENTILE = 99.999
"""Percentile calibration clips each activation range at this percentile of ``|x|`` (ORT's default)."""
DEFAULT_MAC_COVERAGE = 0.75
"""Share of the convolution multiply-accumulates to run in INT8 (the largest convs first)."""
INT8_OP_TYPES = ("Conv",)
"""Op types that get Q/DQ (input + weight). Adds are not quantized themselves: ORT would put Q/DQ on
both of their inputs, the conv output among them, which splits TensorRT's conv + add fusion.
ORT's ``Entropy`` is left out on purpose: ``quantize_static`` does not pass a histogram bin count
to it, and with its defaults (128 bins, 128 quantized bins) the KL search has a single candidate, so
it returns exactly the MinMax ranges (every scale identical, checked on the BA-Net graph)."""
INT8_OPSET = 19
"""DequantizeLinear takes float16 scales (and so outputs float16) from opset 19 on."""
INT8_TARGETS = {"tensorrt": "int8 Q/DQ for TensorRT (tensorrt_plan): symmetric S8, float biases, FP16 base",
                "onnxruntime": "int8 Q/DQ for ONNX Runtime's x86 CPU kernels (onnxruntime_onnx, python_onnxruntime): "
                               "U8 activations, S8 per-channel weights, int32 biases, ReLUs folded "
                               "(export/quantize_cpu.py)"}
"""What each INT8 artifact is built for; the manifest records the key as the artifact's ``target``."""
MIN_CALIBRATION_IMAGES = 8
"""Fewer images than this cannot give activation ranges worth shipping: refused outright."""


class CalibrationError(ValueError):
    """Too little or unusable calibration data; the message names the folder and the counts."""


def convert_fp16(src: str | Path, dst: str | Path) -> Path:
    """Write an FP16 copy of the FP32 graph ``src`` (weights and compute in float16, I/O float32)."""
    import onnx

    onnx.save(_to_fp16(onnx.load(str(src))), str(dst))
    log.info("wrote FP16 graph %s", dst)
    return Path(dst)


def _to_fp16(model):
    """``model`` in float16 with float32 I/O, topologically sorted."""
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    half = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
    # The converter appends its input casts at the end of the node list; onnx.checker (and strict
    # parsers) want a topologically sorted graph.
    OnnxModel.graph_topological_sort(half.graph, is_deterministic=False)
    return half


class _ImageReader:
    """``onnxruntime.quantization.CalibrationDataReader`` over preprocessed images, one at a time."""

    def __init__(self, paths: Sequence[Path], size: int, progress: Callable[[int], None] | None = None):
        self.paths = list(paths)
        self.size = size
        self.progress = progress
        self.index = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.index >= len(self.paths):
            return None
        path = self.paths[self.index]
        self.index += 1
        x = processing.preprocess(processing.load_image(path), self.size)[None]
        if self.progress is not None:
            self.progress(1)
        return {NETWORK_INPUT.name: x}

    def rewind(self) -> None:  # some ORT versions call it between calibration passes
        self.index = 0


def select_calibration_images(paths: Sequence[Path], count: int, *, source: str) -> list[Path]:
    """Pick ``count`` images spread evenly over ``paths`` (sorted, deterministic).

    Raises :class:`CalibrationError` when ``source`` holds fewer images than asked for or fewer
    than :data:`MIN_CALIBRATION_IMAGES`.
    """
    if count < MIN_CALIBRATION_IMAGES:
        raise CalibrationError(f"--calib-count {count} is too small: INT8 calibration needs at least "
                               f"{MIN_CALIBRATION_IMAGES} images")
    if len(paths) < count:
        raise CalibrationError(f"{source} holds {len(paths)} calibration images, {count} requested; "
                               f"point --calib-data at more images or lower --calib-count "
                               f"(at least {MIN_CALIBRATION_IMAGES})")
    picks = np.linspace(0, len(paths) - 1, count).round().astype(int)
    return [paths[i] for i in picks]


def conv_macs(model) -> dict[str, int]:
    """Multiply-accumulates per image of every ``Conv`` node of a shape-inferred ONNX ``model``, by node name."""
    from onnx import numpy_helper

    values = [*model.graph.value_info, *model.graph.output]
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}
    weights = {i.name: numpy_helper.to_array(i).shape for i in model.graph.initializer}
    macs = {}
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        out = shapes.get(node.output[0])
        if node.input[1] not in weights or not out or len(out) != 4 or not all(out[2:]):
            raise ValueError(f"conv {node.name!r}: no static weight or output shape; run shape inference first")
        macs[node.name] = int(np.prod(weights[node.input[1]])) * out[2] * out[3]
    return macs


def select_int8_convs(model, coverage: float = DEFAULT_MAC_COVERAGE) -> list[str]:
    """Names of the ``Conv`` nodes to quantize: the largest by MACs until ``coverage`` of all conv MACs.

    The stem (a conv reading a graph input) and the final convs (no conv after them: the 1-channel
    head) are never picked: they are cheap here and the most sensitive to rounding. ``model`` must
    be shape-inferred (:func:`conv_macs`); ``coverage`` in (0, 1].
    """
    if not 0.0 < coverage <= 1.0:
        raise ValueError(f"MAC coverage must be in (0, 1], got {coverage}")
    macs = conv_macs(model)
    inputs = {i.name for i in model.graph.input}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def feeds_a_conv(node) -> bool:
        seen, todo = set(), list(node.output)
        while todo:
            for nxt in consumers.get(todo.pop(), []):
                if nxt.op_type == "Conv":
                    return True
                if id(nxt) not in seen:
                    seen.add(id(nxt))
                    todo.extend(nxt.output)
        return False

    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    kept_float = {n.name for n in convs if n.input[0] in inputs or not feeds_a_conv(n)}
    total = sum(macs.values())
    picked, covered = [], 0
    for name in sorted((k for k in macs if k not in kept_float), key=lambda k: (-macs[k], k)):
        if covered >= coverage * total:
            break
        covered += macs[name]
        picked.append(name)
    log.info("INT8 convs: %d of %d (%.0f %% of conv MACs); float: stem/head %s", len(picked), len(convs),
             100.0 * sum(macs[n] for n in picked) / total, sorted(kept_float))
    return picked


def _opset(model) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def int8_opset(model_or_opset) -> int:
    """The opset of the INT8 graph made from a graph (or opset number): at least :data:`INT8_OPSET`."""
    opset = model_or_opset if isinstance(model_or_opset, int) else _opset(model_or_opset)
    return max(INT8_OPSET, opset)


def residual_adds(model, convs: Sequence[str]) -> list[str]:
    """Names of the ``Add`` nodes of a Q/DQ ``model`` that TensorRT can fuse into an INT8 conv.

    One input comes straight from a quantized conv of ``convs`` (no Q/DQ in between), the other
    (the residual) from a DequantizeLinear.
    """
    chosen = set(convs)
    producer = {out: node for node in model.graph.node for out in node.output}
    kinds = [[getattr(producer.get(i), "op_type", None) for i in node.input] for node in model.graph.node]
    return [node.name for node, k in zip(model.graph.node, kinds) if node.op_type == "Add" and "DequantizeLinear" in k
            and any(i in producer and producer[i].name in chosen for i in node.input)]


def calibration_method(method: str):
    """ONNX Runtime's ``CalibrationMethod`` for one of :data:`CALIBRATION_METHODS` (ValueError otherwise)."""
    from onnxruntime.quantization import CalibrationMethod

    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {CALIBRATION_METHODS}, got {method!r}")
    return {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}[method]


def quantize_int8(src: str | Path, dst: str | Path, calibration_images: Sequence[Path], *, image_size: int,
                  method: str = DEFAULT_CALIBRATION_METHOD, mac_coverage: float = DEFAULT_MAC_COVERAGE,
                  progress: Callable[[int], None] | None = None) -> Path:
    """Write the INT8 Q/DQ graph for TensorRT from the FP32 graph ``src``, calibrated on ``calibration_images``.

    ``method`` is one of :data:`CALIBRATION_METHODS` (ORT's MinMax, or Percentile at
    :data:`PERCENTILE`). Q/DQ go on the convs chosen by :func:`select_int8_convs` (``mac_coverage``)
    (the residual adds behind them read a shared DequantizeLinear, :func:`residual_adds`); the rest is FP16. The
    node names and the recipe are written into the graph's metadata (``banet.int8_nodes``,
    ``banet.int8_adds``: the residual adds in TensorRT's fusible pattern, ``banet.int8_recipe``,
    ``banet.int8_target``).
    """
    import tempfile

    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    calibrate = calibration_method(method)
    with tempfile.TemporaryDirectory(prefix="banet-int8-") as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "quantized_fp32.onnx"
        # shape inference + graph cleanup first, as ORT's quantization guide recommends
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        model = onnx.load(str(prepared))
        convs = select_int8_convs(model, mac_coverage)
        quantize_static(
            str(prepared), str(quantized), _ImageReader(calibration_images, image_size, progress),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            op_types_to_quantize=list(INT8_OP_TYPES), nodes_to_quantize=convs,
            calibrate_method=calibrate,
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "CalibPercentile": PERCENTILE,
                           # TensorRT: float biases (no int32 bias DQ), and no Q/DQ on conv outputs
                           "QuantizeBias": False, "OpTypesToExcludeOutputQuantization": list(INT8_OP_TYPES)},
        )
        graph = onnx.load(str(quantized))
        adds = residual_adds(graph, convs)
        if int8_opset(graph) > _opset(graph):
            graph = version_converter.convert_version(graph, int8_opset(graph))
        graph = _to_fp16(graph)
    recipe = (f"{method} calibration on {len(calibration_images)} images; Q/DQ on {len(convs)} convs "
              f"({mac_coverage:.0%} of conv MACs), {len(adds)} residual adds fusible; float biases; FP16 outside Q/DQ")
    for key, value in (("banet.int8_recipe", recipe), ("banet.int8_nodes", ",".join(convs)),
                       ("banet.int8_adds", ",".join(adds)), ("banet.int8_target", "tensorrt")):
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(dst))
    log.info("wrote INT8 Q/DQ graph %s (%s)", dst, recipe)
    return Path(dst)
