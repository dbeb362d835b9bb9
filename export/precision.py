"""Precision that lives in the graph: FP16 casts and explicit INT8 quantization (Q/DQ).

TensorRT 10+ builds strongly typed networks (TensorRT 11 and TensorRT-RTX have no FP16/INT8 builder
flags or INT8 calibrators), so the reduced precision is written into the ONNX graph here and every
consumer (ONNX Runtime, TensorRT, Triton) runs exactly that graph.

- FP16: ``onnxruntime.transformers.float16.convert_float_to_float16`` with ``keep_io_types=True``
  (I/O stay float32, so clients and Triton configs do not change).
- INT8 for TensorRT (:func:`quantize_int8`, the ``int8`` artifact for ``tensorrt_plan``): activation
  ranges from ONNX Runtime's calibrators, Q/DQ placed here by TensorRT's "Q/DQ Layer-Placement
  Recommendations" (developer guide, Explicit Quantization; export/int8_fusion.py checks the result):
  symmetric int8 activations and per-channel weights, **float biases** (TensorRT rejects an int32
  bias DequantizeLinear), Q/DQ on every quantized conv's input and weight and none on conv outputs
  (nothing between a conv and its ReLU), the residual input of each ResNet Add through a
  DequantizeLinear (TensorRT fuses the Add into the conv writing the other input). Every conv from
  stem to head unless the INT8 gate forbids it (:data:`INT8_PLACEMENTS`). Then the whole graph is
  converted to **FP16 outside the Q/DQ pairs** (opset 19: DequantizeLinear with float16 scales
  outputs float16), because in a strongly typed network everything between Q/DQ pairs runs in the
  scale's type. Calibrated on real images. docs/export.md compares it with NVIDIA ModelOpt's placement.

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
from banet.spec import MASK_THRESHOLD, NETWORK_INPUT

log = logging.getLogger(__name__)

CALIBRATION_METHODS = ("minmax", "percentile")
"""ORT's ``Entropy`` is left out on purpose: with its defaults (128 bins, 128 quantized bins) the KL
search has a single candidate, so it returns exactly the MinMax ranges (every scale identical, checked
on the BA-Net graph)."""
DEFAULT_CALIBRATION_METHOD = "percentile"
PERCENTILE = 99.999
"""Percentile calibration clips each activation range at this percentile of ``|x|`` (ORT's default)."""
DEFAULT_MAC_COVERAGE = 0.75
"""Share of the convolution multiply-accumulates to run in INT8 (the largest convs first)."""
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


def calibration_method(method: str):
    """ONNX Runtime's ``CalibrationMethod`` for one of :data:`CALIBRATION_METHODS` (ValueError otherwise)."""
    from onnxruntime.quantization import CalibrationMethod

    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {CALIBRATION_METHODS}, got {method!r}")
    return {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}[method]


INT8_PLACEMENTS = ("all", "no_stem_head", "heavy")
"""Which convs the TensorRT INT8 graph quantizes, tried in this order by :func:`quantize_int8`: every conv from
stem to head; every conv but the stem and the final ones (:func:`select_int8_convs` at coverage 1); the
heaviest convs holding ``mac_coverage`` of the conv MACs (the recipe of before). The first whose masks on
the calibration images stay within the INT8 gate is kept; the mask gate on held-out images
(export/parity.py) then scores the artifact as before."""
WEIGHT_QMAX = 127.0
"""TensorRT's INT8 is symmetric: scale = max|x| / 127 (weights per output channel, activations per tensor)."""
INT8_PASS_THROUGH = ("MaxPool", "GlobalAveragePool", "AveragePool")
"""Ops TensorRT runs in INT8 between DQ inputs and a Q output (Q/DQ propagation, export/int8_fusion.py)."""
MIN_SCALE = 2.0 ** -14
"""The smallest normal float16: the scales become float16 with the graph, and a zero scale divides by zero."""


def placement_convs(model, placement: str, mac_coverage: float = DEFAULT_MAC_COVERAGE) -> list[str]:
    """Names of the convs one of :data:`INT8_PLACEMENTS` quantizes (``model`` shape-inferred)."""
    if placement == "all":
        return [n.name for n in model.graph.node if n.op_type == "Conv"]
    if placement == "no_stem_head":
        return select_int8_convs(model, 1.0)
    if placement == "heavy":
        return select_int8_convs(model, mac_coverage)
    raise ValueError(f"INT8 placement must be one of {INT8_PLACEMENTS}, got {placement!r}")


def qdq_tensors(model, convs: Sequence[str]) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """Where the Q/DQ pairs go for ``convs``, following TensorRT's placement rules (export/int8_fusion.py).

    Returns ``(tensors, int8_inputs, shared)``: the activations to quantize (the data input of every
    chosen conv, the residual input of every Add that TensorRT fuses into a chosen conv, the inputs of a
    pooling or Concat whose output only chosen convs read, when their producers can write INT8);
    ``{node name: its input(s) that read the DequantizeLinear}`` for those Adds, pools and Concats (comma
    separated); ``{concat input: concat output}`` whose scale it shares. Nothing goes on a conv's output unless that output is another Add's residual
    (a downsample branch), so conv + BatchNorm + ReLU and conv + Add + ReLU stay fusible. One Q/DQ pair
    per tensor, shared by all its INT8 consumers (TensorRT fuses the Q into the producing conv).
    """
    chosen = set(convs)
    producer = {out: n for n in model.graph.node for out in n.output}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in model.graph.output}
    tensors = [n.input[0] for n in model.graph.node if n.name in chosen]
    residuals: dict[str, str] = {}
    for add in (n for n in model.graph.node if n.op_type == "Add" and len(n.input) == 2):
        fusable = [i for i in add.input if i in producer and producer[i].name in chosen
                   and len(consumers[i]) == 1 and i not in outputs]
        if fusable and add.input[0] != add.input[1]:
            other = add.input[1] if add.input[0] == fusable[0] else add.input[0]
            if other in producer or other in {i.name for i in model.graph.input}:
                residuals[add.name] = other
                tensors.append(other)
    # an INT8 pooling/concat in front of a quantized conv: quantize its inputs too (Concat: with the output's
    # scale, TensorRT's requirement for an INT8 concat, as ModelOpt does) when the producers can write INT8
    shared: dict[str, str] = {}
    for conv in (n for n in model.graph.node if n.name in chosen):
        pool = producer.get(conv.input[0])
        if pool is None or pool.op_type not in INT8_PASS_THROUGH or not all(
                c.name in chosen for c in consumers[pool.output[0]]):
            continue
        feeds = [i for i in pool.input if i and i in producer or i in tensors]
        if len(feeds) != len(pool.input) or not all(i in tensors or _int8_chain_end(i, chosen, producer, consumers)
                                                    for i in feeds):
            continue
        for i in feeds:
            tensors.append(i)
            if pool.op_type == "Concat":
                shared[i] = pool.output[0]
        residuals[pool.name] = ",".join(feeds)
    return list(dict.fromkeys(tensors)), residuals, shared


def _int8_chain_end(tensor: str, chosen: set[str], producer: dict, consumers: dict) -> bool:
    """``tensor`` is written by a chosen conv through ops TensorRT fuses into it, each read once."""
    node = producer.get(tensor)
    while node is not None and node.op_type in ("Relu", "BatchNormalization", "Clip"):
        if len(consumers[node.output[0]]) != 1:
            return False
        tensor = node.input[0]
        node = producer.get(tensor)
    return node is not None and node.name in chosen and len(consumers[tensor]) == 1


def insert_qdq(model, convs: Sequence[str], amax: dict[str, float]):
    """A copy of the FP32 ``model`` with INT8 Q/DQ for ``convs`` (per-channel symmetric weights, float biases).

    ``amax``: the calibrated ``max |x|`` of each tensor :func:`qdq_tensors` names. The INT8 consumers (the
    chosen convs' data inputs, the fused Adds' residual inputs) read the DequantizeLinear; every other
    consumer keeps the float tensor.
    """
    import copy

    import onnx
    from onnx import helper, numpy_helper
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = copy.deepcopy(model)
    graph = model.graph
    chosen = set(convs)
    tensors, residuals, shared = qdq_tensors(model, convs)
    amax = {**amax, **{t: amax[out] for t, out in shared.items() if out in amax}}
    missing = [t for t in tensors if t not in amax]
    if missing:
        raise ValueError(f"no calibrated range for {missing[:5]}")
    inits = {i.name: i for i in graph.initializer}
    nodes = []
    dq_of = {}
    for t in tensors:
        scale = max(float(amax[t]) / WEIGHT_QMAX, MIN_SCALE)
        graph.initializer.extend([numpy_helper.from_array(np.array(scale, np.float32), f"{t}_scale"),
                                  numpy_helper.from_array(np.array(0, np.int8), f"{t}_zero_point")])
        nodes += [helper.make_node("QuantizeLinear", [t, f"{t}_scale", f"{t}_zero_point"], [f"{t}_quantized"],
                                   name=f"{t}_QuantizeLinear"),
                  helper.make_node("DequantizeLinear", [f"{t}_quantized", f"{t}_scale", f"{t}_zero_point"],
                                   [f"{t}_dequantized"], name=f"{t}_DequantizeLinear")]
        dq_of[t] = f"{t}_dequantized"
    weights_done: dict[str, str] = {}
    for node in graph.node:
        if node.name in chosen:
            node.input[0] = dq_of[node.input[0]]
            w = node.input[1]
            if w not in inits:
                raise ValueError(f"conv {node.name!r}: weight {w!r} is not an initializer")
            if w not in weights_done:
                array = numpy_helper.to_array(inits[w]).astype(np.float32)
                scale = np.maximum(np.abs(array).reshape(array.shape[0], -1).max(axis=1) / WEIGHT_QMAX, MIN_SCALE)
                q = np.clip(np.round(array / scale.reshape(-1, *([1] * (array.ndim - 1)))), -127, 127).astype(np.int8)
                graph.initializer.extend([numpy_helper.from_array(q, f"{w}_quantized"),
                                          numpy_helper.from_array(scale.astype(np.float32), f"{w}_scale"),
                                          numpy_helper.from_array(np.zeros(len(scale), np.int8), f"{w}_zero_point")])
                nodes.append(helper.make_node("DequantizeLinear", [f"{w}_quantized", f"{w}_scale", f"{w}_zero_point"],
                                              [f"{w}_dequantized"], name=f"{w}_DequantizeLinear", axis=0))
                weights_done[w] = f"{w}_dequantized"
            node.input[1] = weights_done[w]
        elif node.name in residuals:
            for name in residuals[node.name].split(","):
                for index, i in enumerate(node.input):
                    if i == name:
                        node.input[index] = dq_of[name]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input}
    kept = [i for i in graph.initializer if i.name in used]  # float weights now stored as int8
    del graph.initializer[:]
    graph.initializer.extend(kept)
    OnnxModel.graph_topological_sort(graph, is_deterministic=True)
    onnx.checker.check_model(model)
    return model


def calibrate_amax(path: str | Path, images: np.ndarray, *, method: str = DEFAULT_CALIBRATION_METHOD,
                   chunk: int = 4) -> dict[str, float]:
    """``max |x|`` of every input and output of the Conv, Add and pooling nodes of the FP32 graph ``path``.

    ONNX Runtime's calibrators (``create_calibrator``, symmetric; ``percentile`` at :data:`PERCENTILE`),
    fed ``chunk`` images at a time so that the histograms, not every intermediate tensor, stay in memory.
    ``images``: ``(N, 3, S, S)`` float32, preprocessed.
    """
    import tempfile

    from onnxruntime.quantization.calibrate import create_calibrator

    import contextlib
    import io

    options = {"symmetric": True, **({"percentile": PERCENTILE} if method == "percentile" else {})}
    # ORT's calibrators print their progress; library code logs instead
    with tempfile.TemporaryDirectory(prefix="banet-calib-") as tmp, contextlib.redirect_stdout(io.StringIO()):
        calibrator = create_calibrator(Path(path), ["Conv", "Add", *INT8_PASS_THROUGH], augmented_model_path=str(Path(tmp) / "aug.onnx"),
                                       calibrate_method=calibration_method(method), providers=["CPUExecutionProvider"],
                                       extra_options=options)
        for start in range(0, len(images), chunk):
            batch = iter([{NETWORK_INPUT.name: images[i:i + 1]} for i in range(start, min(start + chunk, len(images)))])
            calibrator.collect_data(_Batches(batch))
        data = calibrator.compute_data()
    return {name: float(max(abs(float(np.max(value.range_value[0]))), abs(float(np.max(value.range_value[1])))))
            for name, value in data.items()}


class _Batches:
    """``CalibrationDataReader`` over prepared feeds."""

    def __init__(self, feeds) -> None:
        self.feeds = feeds

    def get_next(self):
        return next(self.feeds, None)


def mask_agreement(reference: np.ndarray, candidate: np.ndarray, threshold: float = MASK_THRESHOLD) -> list[float]:
    """Per-image Jaccard of the thresholded probabilities of two logit batches ``(N, 1, S, S)``."""
    from banet.metrics import jaccard

    def masks(logits):
        return 1.0 / (1.0 + np.exp(-logits.astype(np.float64))) > threshold

    return [jaccard(a, b) for a, b in zip(masks(reference), masks(candidate))]


def _logits(model_or_path, images: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    source = model_or_path if isinstance(model_or_path, (str, Path)) else model_or_path.SerializeToString()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(source) if isinstance(source, Path) else source, options,
                                   providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {NETWORK_INPUT.name: images[i:i + 1]})[0] for i in range(len(images))])


def quantize_int8(src: str | Path, dst: str | Path, calibration_images: Sequence[Path], *, image_size: int,
                  method: str = DEFAULT_CALIBRATION_METHOD, mac_coverage: float = DEFAULT_MAC_COVERAGE,
                  placements: Sequence[str] = INT8_PLACEMENTS, gate=None,
                  progress: Callable[[int], None] | None = None) -> Path:
    """Write the INT8 Q/DQ graph for TensorRT from the FP32 graph ``src``, calibrated on ``calibration_images``.

    ``method`` is one of :data:`CALIBRATION_METHODS` (ORT's MinMax, or Percentile at :data:`PERCENTILE`).
    The placement (:func:`qdq_tensors`, :func:`insert_qdq`): Q/DQ on the data input and the weight of
    every quantized conv and on the residual input of every Add that TensorRT fuses into one, none on
    conv outputs; the rest of the graph is FP16. ``placements`` (default :data:`INT8_PLACEMENTS`) are
    tried in order; the first whose masks on the calibration images stay within ``gate`` (an
    :class:`export.parity.Gate`; default the INT8 gate) against the FP32 graph's is written (the last
    one is written anyway, with a warning). Metadata: ``banet.int8_nodes``, ``banet.int8_adds`` (the
    residual adds in TensorRT's fusible pattern), ``banet.int8_placement``, ``banet.int8_trials``
    (JSON: each placement tried, its convs and calibration-image agreement), ``banet.int8_recipe``,
    ``banet.int8_target``.
    """
    import json
    import tempfile

    import onnx
    from onnx import version_converter
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from export.parity import DEFAULT_GATES

    gate = gate or DEFAULT_GATES["int8"]
    if not placements:
        raise ValueError("no INT8 placement to try")
    for name in placements:
        if name not in INT8_PLACEMENTS:
            raise ValueError(f"INT8 placement must be one of {INT8_PLACEMENTS}, got {name!r}")
    calibration_method(method)
    images = []
    for path in calibration_images:
        images.append(processing.preprocess(processing.load_image(path), image_size))
        if progress is not None:
            progress(1)
    batch = np.stack(images).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="banet-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # shape inference + graph cleanup first, as ORT's quantization guide recommends
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        model = onnx.load(str(prepared))
        amax = calibrate_amax(prepared, batch, method=method)
        reference = _logits(prepared, batch)
    trials: list[dict] = []
    for name in placements:
        convs = placement_convs(model, name, mac_coverage)
        graph = insert_qdq(model, convs, amax)
        _, int8_inputs, _ = qdq_tensors(model, convs)
        residuals = [n for n in int8_inputs if n in {a.name for a in model.graph.node if a.op_type == "Add"}]
        if int8_opset(graph) > _opset(graph):
            graph = version_converter.convert_version(graph, int8_opset(graph))
        graph = _to_fp16(graph)
        agreement = mask_agreement(reference, _logits(graph, batch))
        trial = {"placement": name, "convs": len(convs), "residual_adds": len(residuals),
                 "calibration_agreement_mean": float(np.mean(agreement)),
                 "calibration_agreement_worst": float(np.min(agreement))}
        trial["within_gate"] = bool(trial["calibration_agreement_mean"] >= gate.min_agreement
                                    and trial["calibration_agreement_worst"] >= gate.min_worst_agreement)
        trials.append(trial)
        log.info("INT8 placement %s: %d convs, %d fused residual adds, calibration-image mask agreement %.4f "
                 "(worst %.4f)%s", name, len(convs), len(residuals), trial["calibration_agreement_mean"],
                 trial["calibration_agreement_worst"], "" if trial["within_gate"] else ": outside the INT8 gate")
        if trial["within_gate"]:
            break
    else:
        log.warning("no INT8 placement kept the calibration images' masks within the INT8 gate; writing %r "
                    "(the export's gate scores it on the parity images)", name)
    recipe = (f"{method} calibration on {len(calibration_images)} images; placement {name!r}: Q/DQ on {len(convs)} "
              f"convs (input and per-channel weight), {len(residuals)} residual adds fusible (DQ residual input); "
              f"float biases; FP16 outside Q/DQ")
    for key, value in (("banet.int8_recipe", recipe), ("banet.int8_nodes", ",".join(convs)),
                       ("banet.int8_adds", ",".join(residuals)), ("banet.int8_placement", name),
                       ("banet.int8_trials", json.dumps(trials)), ("banet.int8_target", "tensorrt")):
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(dst))
    log.info("wrote INT8 Q/DQ graph %s (%s)", dst, recipe)
    return Path(dst)


def int8_placement_record(path: str | Path) -> dict:
    """The manifest's record of a TensorRT INT8 graph: its placement, the placements tried, and the static
    fusibility check (:func:`export.int8_fusion.check_int8_fusion`)."""
    import json

    import onnx

    from export.int8_fusion import check_int8_fusion

    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    return {"placement": meta.get("banet.int8_placement"),
            "placement_trials": json.loads(meta.get("banet.int8_trials", "[]")),
            "int8_fusion": check_int8_fusion(model).to_dict()}
