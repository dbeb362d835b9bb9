"""INT8 for ONNX Runtime's x86 CPU kernels: the ``int8_cpu`` artifact (``model_int8_cpu.onnx``).

A different recipe from the TensorRT one (:func:`export.precision.quantize_int8`, which stays as it
is): ONNX Runtime on x86 turns a ``DequantizeLinear -> Conv -> QuantizeLinear`` group into one
``QLinearConv`` (u8 x s8 -> int32 kernels, MLAS) only when the activations are **U8**, and it keeps
a group float (dequantizing its weights on every call) when the conv's output is not quantized. So:

- ``quantize_static`` in QDQ format, activations ``QUInt8`` asymmetric, weights ``QInt8`` per
  channel, int32 biases (ORT's kernels take them; TensorRT's parser does not, hence two artifacts);
- the convs' outputs are quantized, and a ``Relu`` right after a quantized conv (or after a residual
  ``Add`` of two quantized tensors) is folded into the output's quantization (its range starts at
  0, so clipping to the u8 range is the ReLU): ORT fuses DQ -> Conv -> Q into ``QLinearConv`` and
  DQ -> Add -> Q into ``QLinearAdd``;
- ``reduce_range`` (7-bit weights) on CPUs without an int8 dot-product instruction (VNNI/AMX; see
  :func:`banet.machine.has_int8_dot_product`), where the AVX2 kernels sum u8 x s8 pairs in int16 and
  full-range weights can saturate; off on VNNI machines. The export machine decides unless told;
- which convs: :func:`select_cpu_int8_convs` keeps the stem, the head and the convs of the early
  ResNet stages (:data:`DEFAULT_FLOAT_PREFIXES`: layer1, layer2, large maps, few channels, where
  the Q/DQ and layout work costs more than int8 saves) float, and quantizes the rest. That set was
  chosen by measurement (``python -m export.int8_search``, results in bench/results/).

:func:`fused_node_counts` reads ONNX Runtime's own optimized graph and counts what really runs in
int8 (``QLinearConv`` and friends) and what stayed float, so a recipe that silently falls back to
FP32 is caught (tests/export/test_quantize_cpu.py).
"""

from __future__ import annotations

import logging
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from export.precision import (DEFAULT_CALIBRATION_METHOD, PERCENTILE, _ImageReader, calibration_method,
                              select_int8_convs)

log = logging.getLogger(__name__)

TARGET = "onnxruntime"
"""The manifest's ``target`` of this artifact (a key of :data:`export.precision.INT8_TARGETS`)."""
DEFAULT_FLOAT_PREFIXES = ("/encoder/layer1/", "/encoder/layer2/")
"""Node-name prefixes of convs kept float besides the stem and head (chosen by measurement, see the module doc)."""
FOLDED_OP_TYPES = ("Relu",)
"""Activations folded into the quantization of the tensor before them (removed from the graph)."""
INT8_FUSED_OPS = ("QLinearConv", "NhwcQLinearConv", "QLinearAdd", "QLinearMul", "QLinearConcat",
                  "QLinearSigmoid", "QLinearAveragePool", "QLinearGlobalAveragePool")
"""Ops of ONNX Runtime's optimized graph that compute in int8 (ORT's QDQ fusions on the CPU provider)."""


def select_cpu_int8_convs(model, *, float_prefixes: Sequence[str] = DEFAULT_FLOAT_PREFIXES) -> list[str]:
    """Names of the convs to run in int8: every conv but the stem, the head and those under ``float_prefixes``.

    ``model`` must be shape-inferred (as :func:`export.precision.select_int8_convs`, which gives the
    candidates: no stem, no final conv). Tiny presets have the same node names, so the rule carries over.
    """
    candidates = select_int8_convs(model, 1.0)
    picked = [name for name in candidates if not any(name.startswith(p) for p in float_prefixes)]
    order = {n.name: i for i, n in enumerate(model.graph.node)}
    return sorted(picked, key=order.__getitem__)


def _fold_activations(model, convs: Sequence[str]) -> list[str]:
    """The nodes to hand to ``quantize_static``: ``convs``, the residual Adds whose inputs both come
    from the quantized set, and the ReLUs right after any of those (folded by ORT's QDQ quantizer)."""
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    producer = {out: node for node in model.graph.node for out in node.output}
    chosen = set(convs)
    quantized_out = set()  # tensors the chosen nodes produce in int8

    def relu_after(node) -> str | None:
        after = consumers.get(node.output[0], [])
        if len(after) == 1 and after[0].op_type in FOLDED_OP_TYPES:
            return after[0].name
        return None

    nodes = []
    for node in model.graph.node:
        if node.name in chosen:
            nodes.append(node.name)
        elif node.op_type == "Add" and len(node.input) == 2 and all(
                i in producer and producer[i].name in quantized_out for i in node.input):
            nodes.append(node.name)  # QLinearAdd: a residual add of two int8 tensors
        else:
            continue
        quantized_out.add(node.name)
        relu = relu_after(node)
        if relu is not None:
            nodes.append(relu)
            quantized_out.add(relu)
    return nodes


def _unshare_biases(model) -> int:
    """Give every conv its own bias initializer; returns how many copies were made.

    The simplifier merges identical initializers (e.g. the zero biases of freshly initialized convs),
    and ``quantize_static`` quantizes a bias once, with the first conv's input x weight scale: shared,
    the other convs (float ones included) would read that conv's int32 bias through a DequantizeLinear.
    """
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    seen: set[str] = set()
    copies = 0
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 3 or node.input[2] not in inits:
            continue
        name = node.input[2]
        if name in seen:
            copy = numpy_helper.from_array(numpy_helper.to_array(inits[name]).copy(), f"{name}/{node.name}")
            model.graph.initializer.append(copy)
            node.input[2] = copy.name
            copies += 1
        seen.add(name)
    return copies


def quantize_int8_cpu(src: str | Path, dst: str | Path, calibration_images: Sequence[Path], *, image_size: int,
                      method: str = DEFAULT_CALIBRATION_METHOD, convs: Sequence[str] | None = None,
                      float_prefixes: Sequence[str] = DEFAULT_FLOAT_PREFIXES, reduce_range: bool | None = None,
                      progress: Callable[[int], None] | None = None) -> Path:
    """Write the INT8 Q/DQ graph for ONNX Runtime's CPU provider from the FP32 graph ``src``.

    ``convs``: the conv node names to quantize (default :func:`select_cpu_int8_convs` with
    ``float_prefixes``). ``reduce_range``: 7-bit weights; None decides from this machine's CPU
    (:func:`banet.machine.has_int8_dot_product`: off with VNNI/AMX, on without). ``method``: one of
    :data:`export.precision.CALIBRATION_METHODS`. The recipe, node names and target are written into
    the graph's metadata (``banet.int8_recipe``, ``banet.int8_nodes``, ``banet.int8_target``).
    Float32 I/O, opset of ``src`` (ORT's QDQ on it).
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from banet.machine import cpu_flags, has_int8_dot_product

    calibrate = calibration_method(method)
    if reduce_range is None:
        reduce_range = not has_int8_dot_product()
    with tempfile.TemporaryDirectory(prefix="banet-int8-cpu-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        model = onnx.load(str(prepared))
        if _unshare_biases(model):
            onnx.save(model, str(prepared))
        known = {n.name for n in model.graph.node if n.op_type == "Conv"}
        picked = list(convs) if convs is not None else select_cpu_int8_convs(model, float_prefixes=float_prefixes)
        unknown = sorted(set(picked) - known)
        if unknown:
            raise ValueError(f"not conv nodes of {src}: {unknown[:5]}")
        if not picked:
            raise ValueError("no conv left to quantize (every conv is kept float)")
        nodes = _fold_activations(model, picked)
        quantize_static(
            str(prepared), str(dst), _ImageReader(calibration_images, image_size, progress),
            quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=reduce_range,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            op_types_to_quantize=["Conv", "Add", *FOLDED_OP_TYPES], nodes_to_quantize=nodes,
            calibrate_method=calibrate,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True, "CalibPercentile": PERCENTILE},
        )
    graph = onnx.load(str(dst))
    op_of = {n.name: n.op_type for n in model.graph.node}
    adds = sum(1 for n in nodes if op_of[n] == "Add")
    flags = ",".join(cpu_flags()) or "none"
    recipe = (f"{method} calibration on {len(calibration_images)} images; QDQ U8 activations (asymmetric), "
              f"S8 per-channel weights, int32 biases, reduce_range {'on' if reduce_range else 'off'} "
              f"(export CPU flags: {flags}); {len(picked)} convs and {adds} residual adds in int8, ReLUs folded; "
              f"float: stem, head, {', '.join(float_prefixes) or 'nothing else'}")
    for key, value in (("banet.int8_recipe", recipe), ("banet.int8_nodes", ",".join(picked)),
                       ("banet.int8_target", TARGET)):
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(dst))
    log.info("wrote CPU INT8 graph %s (%s)", dst, recipe)
    return Path(dst)


def optimized_graph(path: str | Path, out: str | Path, *, threads: int | None = 1):
    """ONNX Runtime's optimized graph of ``path`` on the CPU provider (all optimizations), as loaded ONNX.

    Written by ``SessionOptions.optimized_model_filepath`` to ``out`` (the fused ops are contrib ops
    of domain ``com.microsoft``).
    """
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(out)
    if threads is not None:
        options.intra_op_num_threads = threads
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return onnx.load(str(out))


def fused_node_counts(path: str | Path) -> dict[str, int]:
    """What ONNX Runtime really runs for ``path``: counts of int8 ops (:data:`INT8_FUSED_OPS`), float
    ``Conv``/``FusedConv`` nodes, and Q/DQ nodes left in the optimized graph.

    Keys: every op type of the optimized graph, plus ``int8_convs`` (QLinearConv + NhwcQLinearConv),
    ``float_convs`` (Conv + FusedConv) and ``int8_ops`` (the sum over :data:`INT8_FUSED_OPS`).
    """
    with tempfile.TemporaryDirectory(prefix="banet-ort-opt-") as tmp:
        graph = optimized_graph(path, Path(tmp) / "optimized.onnx")
    ops = Counter(node.op_type for node in graph.graph.node)
    out = dict(ops)
    out["int8_convs"] = ops["QLinearConv"] + ops["NhwcQLinearConv"]
    out["float_convs"] = ops["Conv"] + ops["FusedConv"]
    out["int8_ops"] = sum(ops[k] for k in INT8_FUSED_OPS)
    return out
