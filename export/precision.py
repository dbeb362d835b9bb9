"""Precision that lives in the graph: FP16 casts and explicit INT8 quantization (Q/DQ).

TensorRT 10+ builds strongly typed networks (TensorRT 11 removed the FP16/INT8 builder flags and
the INT8 calibrators), so the reduced precision is written into the ONNX graph here and every
consumer (ONNX Runtime, TensorRT, Triton) runs exactly that graph.

- FP16: ``onnxruntime.transformers.float16.convert_float_to_float16`` with ``keep_io_types=True``
  (I/O stay float32, so clients and Triton configs do not change).
- INT8: ONNX Runtime's ``quantize_static`` in QDQ format, per-channel weights, symmetric int8
  activations and weights (the form TensorRT consumes), calibrated on real images.
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
"""ORT's ``Entropy`` is left out on purpose: ``quantize_static`` does not pass a histogram bin count
to it, and with its defaults (128 bins, 128 quantized bins) the KL search has a single candidate, so
it returns exactly the MinMax ranges (every scale identical, checked on the BA-Net graph)."""
MIN_CALIBRATION_IMAGES = 8
"""Fewer images than this cannot give activation ranges worth shipping: refused outright."""


class CalibrationError(ValueError):
    """Too little or unusable calibration data; the message names the folder and the counts."""


def convert_fp16(src: str | Path, dst: str | Path) -> Path:
    """Write an FP16 copy of the FP32 graph ``src`` (weights and compute in float16, I/O float32)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    # Resize in fp16 is not implemented by every ORT CPU build; the blocked ops stay fp32 with casts.
    half = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
    # The converter appends its input casts at the end of the node list; onnx.checker (and strict
    # parsers) want a topologically sorted graph.
    _sort_topologically(half.graph)
    onnx.save(half, str(dst))
    log.info("wrote FP16 graph %s", dst)
    return Path(dst)


def _sort_topologically(graph) -> None:
    """Reorder ``graph.node`` in place so that every node comes after the producers of its inputs."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        ready = [n for n in pending if all(name in available for name in n.input)]
        if not ready:
            raise ValueError(f"graph has a cycle or dangling inputs near node {pending[0].name!r}")
        for node in ready:
            available.update(node.output)
        ordered.extend(ready)
        ready_ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ready_ids]
    nodes = [type(n)() for n in ordered]
    for copy, node in zip(nodes, ordered):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(nodes)


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


def quantize_int8(src: str | Path, dst: str | Path, calibration_images: Sequence[Path], *, image_size: int,
                  method: str = "minmax", progress: Callable[[int], None] | None = None) -> Path:
    """Write an INT8 Q/DQ copy of the FP32 graph ``src`` calibrated on ``calibration_images``.

    ``method`` is one of :data:`CALIBRATION_METHODS` (ORT's MinMax, or Percentile at 99.999 %).
    """
    import tempfile

    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {CALIBRATION_METHODS}, got {method!r}")
    calibrate = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}[method]
    with tempfile.TemporaryDirectory(prefix="banet-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # shape inference + graph cleanup first, as ORT's quantization guide recommends
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared), str(dst), _ImageReader(calibration_images, image_size, progress),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            calibrate_method=calibrate,
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
        )
    log.info("wrote INT8 Q/DQ graph %s (%s calibration on %d images)", dst, method, len(calibration_images))
    return Path(dst)
