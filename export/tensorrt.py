"""ONNX -> TensorRT engine, with the data-center TensorRT or NVIDIA TensorRT for RTX.

One loader (:func:`load_builder`) imports ``tensorrt`` (the data-center TensorRT whose plans Triton's
``tensorrt_plan`` backend loads) or else ``tensorrt_rtx_bindings`` (TensorRT for RTX, PyPI wheels
``tensorrt-rtx-cu13-libs`` + ``tensorrt-rtx-cu13-bindings``). Both expose the same API for what is
used here: ``Builder``, ``OnnxParser``, optimization profiles, ``build_serialized_network``.

- *Can build* and *can run* differ. TensorRT-RTX builds ahead of time on a machine without a GPU
  ("CPU-only AOT"); its engines are compiled for the GPU when first run there, and target the
  compute capabilities in :data:`RTX_DEFAULT_TARGETS` (RTX and A100 class: no SM 9.0, so not
  H100/H200). Triton's ``tensorrt_plan`` backend cannot load them: they are labelled as such
  (:attr:`Builder.for_triton` is False) and never promoted into a Triton repository. The data-center
  TensorRT needs a GPU to build and builds for that GPU and that TensorRT version.
- Networks are strongly typed (TensorRT 11 and TensorRT-RTX have no FP16/INT8 builder flags): the
  precision comes from the ONNX graph (FP32, FP16 casts or INT8 Q/DQ).
- One optimization profile covers batch 1..:data:`banet.spec.MAX_BATCH_SIZE` (the Triton
  ``max_batch_size``), tuned for :data:`banet.spec.OPT_BATCH_SIZE`.
- A parse or build failure raises :class:`EngineBuildError` with the parser's own messages.

Polygraphy was tried for the loaders (see docs/export.md): with TensorRT-RTX it needs the module
aliased as ``tensorrt_rtx`` plus ``POLYGRAPHY_USE_TENSORRT_RTX=1`` before import, and a parse
failure raises "Could not parse ONNX correctly" with the parser's errors only in its log, so the
few calls are made here directly.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import shlex
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from banet.inference import Runner
from banet.spec import MAX_BATCH_SIZE, NETWORK_INPUT, NETWORK_OUTPUT, OPT_BATCH_SIZE

log = logging.getLogger(__name__)

DEFAULT_WORKSPACE_GIB = 4.0
BUILDERS = ("tensorrt", "tensorrt_rtx")
"""``tensorrt``: data-center TensorRT (Triton ``tensorrt_plan``); ``tensorrt_rtx``: TensorRT for RTX."""
_MODULES = {"tensorrt": ("tensorrt",), "tensorrt_rtx": ("tensorrt_rtx_bindings", "tensorrt_rtx")}
RTX_DEFAULT_TARGETS = ("SM80", "SM86", "SM89", "SM120")
"""The compute capabilities a TensorRT-RTX engine is built for unless told otherwise: the library's
documented default (A100, RTX 30xx, RTX 40xx, RTX 50xx), set explicitly so the manifest is exact.
SM75 (Turing) may be added; SM 9.0 (H100/H200) does not exist in TensorRT-RTX."""
_CPU_AOT_NOISE = ("cudaError 35", "CUDA driver version is insufficient")
"""TensorRT-RTX logs these at error level on every parse/build on a machine without a GPU driver;
the AOT build succeeds regardless, so they are logged at DEBUG there."""


class EngineBuildError(RuntimeError):
    """TensorRT could not parse the ONNX file or build/run the engine; the message names the file."""


@dataclass(frozen=True)
class Builder:
    """An importable TensorRT builder: which one, its Python module and version."""

    kind: str
    """One of :data:`BUILDERS`."""
    module: Any = field(repr=False, compare=False)
    module_name: str
    version: str

    @property
    def for_triton(self) -> bool:
        """True for the data-center TensorRT, whose plans Triton's ``tensorrt_plan`` backend loads."""
        return self.kind == "tensorrt"

    @property
    def label(self) -> str:
        return f"{'TensorRT' if self.for_triton else 'TensorRT-RTX'} {self.version}"

    def can_build(self) -> bool:
        """TensorRT-RTX builds ahead of time without a GPU; the data-center TensorRT needs one."""
        return not self.for_triton or gpu() is not None

    def can_run(self) -> bool:
        """Engines need a CUDA GPU to deserialize and run (also TensorRT-RTX ones)."""
        return gpu() is not None

    def cannot_build_reason(self) -> str:
        return f"{self.label} needs a CUDA GPU to build engines and none is visible"

    def to_dict(self) -> dict[str, Any]:
        return {"builder": self.kind, "module": self.module_name, "version": self.version,
                "for_triton_tensorrt_plan": self.for_triton}


def load_builder(kind: str | None = None) -> Builder | None:
    """Import ``tensorrt``, or else TensorRT-RTX (``tensorrt_rtx_bindings``); None when neither is installed.

    ``kind`` (one of :data:`BUILDERS`) asks for that one only.
    """
    if kind is not None and kind not in BUILDERS:
        raise ValueError(f"TensorRT builder must be one of {BUILDERS}, got {kind!r}")
    for candidate in (kind,) if kind else BUILDERS:
        for name in _MODULES[candidate]:
            if importlib.util.find_spec(name) is None:
                continue
            module = importlib.import_module(name)
            return Builder(candidate, module, name, str(getattr(module, "__version__", "unknown")))
    return None


def gpu() -> dict[str, Any] | None:
    """The first CUDA GPU's name and compute capability (via torch), or None when none is visible."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability(0)
    return {"name": torch.cuda.get_device_name(0), "compute_capability": f"{major}.{minor}", "sm": f"SM{major}{minor}"}


def available(kind: str | None = None) -> bool:
    """True when an engine can be built here (a TensorRT-RTX install, or TensorRT with a GPU)."""
    builder = load_builder(kind)
    return builder is not None and builder.can_build()


def unavailable_reason(kind: str | None = None) -> str:
    builder = load_builder(kind)
    if builder is None:
        wanted = {"tensorrt": "the tensorrt Python package is not installed",
                  "tensorrt_rtx": "TensorRT-RTX is not installed (pip install tensorrt-rtx-cu13-libs "
                                  "tensorrt-rtx-cu13-bindings)"}
        return wanted[kind] if kind else f"neither {wanted['tensorrt']} nor {wanted['tensorrt_rtx'][0].lower()}{wanted['tensorrt_rtx'][1:]}"
    return builder.cannot_build_reason()


def profile_shapes(image_size: int) -> dict[str, tuple[int, ...]]:
    """min/opt/max input shapes of the optimization profile, ``(B, 3, S, S)``."""
    chw = (NETWORK_INPUT.shape[0], image_size, image_size)
    return {"min": (1, *chw), "opt": (OPT_BATCH_SIZE, *chw), "max": (MAX_BATCH_SIZE, *chw)}


def trtexec_command(onnx_path: str | Path, engine_path: str | Path, *, image_size: int,
                    timing_cache: str | Path | None = None,
                    workspace_gib: float = DEFAULT_WORKSPACE_GIB, version_compatible: bool = False) -> str:
    """The ``trtexec`` command line that builds the same engine as :func:`build_engine` with TensorRT.

    Run it with the TensorRT of the Triton container that will serve the plan (docs/serving.md).
    """
    shapes = {k: f"{NETWORK_INPUT.name}:" + "x".join(map(str, v)) for k, v in profile_shapes(image_size).items()}
    argv = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}",
            f"--minShapes={shapes['min']}", f"--optShapes={shapes['opt']}", f"--maxShapes={shapes['max']}",
            "--stronglyTyped", f"--memPoolSize=workspace:{int(workspace_gib * 1024)}M"]
    if version_compatible:
        argv.append("--versionCompatible")
    if timing_cache is not None:
        argv.append(f"--timingCacheFile={timing_cache}")
    return shlex.join(argv)


def timing_cache_path(root: str | Path, builder: Builder) -> Path | None:
    """Where the persistent timing cache of ``builder`` lives under the export root ``root``.

    A cache is specific to the TensorRT version and the GPU, so both are in the name. None for
    TensorRT-RTX: its timing-cache calls are no-ops (deprecated in TensorRT-RTX 1.2).
    """
    if not builder.for_triton:
        return None
    device = gpu()
    tag = "-".join([builder.kind, builder.version, *([device["sm"]] if device else [])])
    return Path(root) / "timing_cache" / f"{tag}.cache"


_LOGGERS: dict[str, Any] = {}


def _logger(trt):
    """The process's one TensorRT ``ILogger`` for module ``trt`` (TensorRT keeps the first one it is
    given): messages go to :mod:`logging`, errors are also kept in ``.errors`` for the exception."""
    if trt.__name__ not in _LOGGERS:
        class Logger(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)
                self.errors: list[str] = []
                self.cpu_aot = False

            def log(self, severity, msg) -> None:
                if self.cpu_aot and any(s in msg for s in _CPU_AOT_NOISE):
                    log.debug("[TRT] %s", msg)
                elif severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                    self.errors.append(msg)
                    log.error("[TRT] %s", msg)
                elif severity == trt.ILogger.Severity.WARNING:
                    log.info("[TRT] %s", msg)  # TensorRT warns per layer (e.g. Q/DQ scale casts): keep the CLI readable
                else:
                    log.debug("[TRT] %s", msg)

        _LOGGERS[trt.__name__] = Logger()
    logger = _LOGGERS[trt.__name__]
    logger.errors = []
    return logger


def _clean(message: str) -> str:
    """A parser/builder message without the lines about the missing GPU driver (CPU-only AOT)."""
    return "\n".join(line for line in str(message).splitlines() if not any(s in line for s in _CPU_AOT_NOISE))


@dataclass(frozen=True)
class EngineBuild:
    """What :func:`build_engine` made: the engine file and what the builder reported."""

    path: Path
    bytes: int
    seconds: float
    builder: dict[str, Any]
    targets: list[str]
    network: dict[str, Any]
    """Layer census of the parsed (strongly typed) network: the builder's input, see :func:`network_census`."""
    timing_cache: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {"bytes": self.bytes, "build_seconds": self.seconds, **self.builder, "targets": self.targets,
                "network": self.network, "timing_cache": self.timing_cache}


def network_census(network, trt) -> dict[str, Any]:
    """Layers of a parsed network by type and output dtype, and how many convolutions read Q/DQ input.

    In a strongly typed network a DequantizeLinear outputs its scale's type, so a quantized conv
    shows its compute dtype (``HALF`` on an FP16 base); ``convolutions_int8`` counts the convs whose
    data and weight inputs both come from a DEQUANTIZE layer (the pattern TensorRT fuses into an
    INT8 convolution).
    """
    producer: dict[str, Any] = {}
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    for layer in layers:
        for j in range(layer.num_outputs):
            producer[layer.get_output(j).name] = layer

    def short(value) -> str:
        return str(value).rsplit(".", 1)[-1]

    def from_dq(tensor) -> bool:
        layer = producer.get(tensor.name) if tensor is not None else None
        return layer is not None and layer.type == trt.LayerType.DEQUANTIZE

    by_type = Counter(short(layer.type) for layer in layers)
    compute = Counter(short(layer.get_output(0).dtype) for layer in layers
                      if layer.type in (trt.LayerType.CONVOLUTION, trt.LayerType.ELEMENTWISE, trt.LayerType.ACTIVATION))
    convs = [layer for layer in layers if layer.type == trt.LayerType.CONVOLUTION]
    conv_dtypes = Counter(short(layer.get_output(0).dtype) for layer in convs)
    int8 = sum(1 for layer in convs if layer.num_inputs >= 2 and from_dq(layer.get_input(0)) and from_dq(layer.get_input(1)))
    return {"layers": len(layers), "by_type": dict(by_type.most_common()),
            "compute_dtypes": dict(compute.most_common()), "convolutions": len(convs),
            "convolution_dtypes": dict(conv_dtypes), "convolutions_int8": int8,
            "quantize": by_type.get("QUANTIZE", 0), "dequantize": by_type.get("DEQUANTIZE", 0)}


def build_engine(onnx_path: str | Path, engine_path: str | Path, *, image_size: int,
                 builder: Builder | None = None, timing_cache: str | Path | None = None,
                 workspace_gib: float = DEFAULT_WORKSPACE_GIB, targets: tuple[str, ...] | None = None,
                 version_compatible: bool = False) -> EngineBuild:
    """Parse ``onnx_path`` into a strongly typed network, build and save a serialized engine.

    ``builder`` defaults to :func:`load_builder`. ``targets``: TensorRT-RTX compute capabilities
    (default :data:`RTX_DEFAULT_TARGETS`); the data-center TensorRT builds for the visible GPU.
    ``timing_cache`` is read when present and written back (data-center TensorRT only).
    ``version_compatible``: a plan later TensorRT 10/11 runtimes can load (Triton then needs
    ``--backend-config=tensorrt,version-compatible=true``). Raises :class:`EngineBuildError` with
    the parser's or builder's errors; nothing is written then.
    """
    builder = builder or load_builder()
    if builder is None:
        raise EngineBuildError(f"cannot build {onnx_path}: {unavailable_reason()}")
    if not builder.can_build():
        raise EngineBuildError(f"cannot build {onnx_path}: {builder.cannot_build_reason()}")
    if TYPE_CHECKING:  # mypy checks the calls against the TensorRT type stubs (tests/export)
        import tensorrt as trt
    else:
        trt = builder.module
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    started = time.perf_counter()
    logger = _logger(trt)
    logger.cpu_aot = not builder.for_triton and gpu() is None
    trt_builder = trt.Builder(logger)
    # strongly typed: the precision is the graph's (TensorRT 10 needs the flag; RTX and 11 accept it)
    network = trt_builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [_clean(parser.get_error(i)) for i in range(parser.num_errors)] or logger.errors
        raise EngineBuildError(f"{builder.label} could not parse {onnx_path.name}: " + "; ".join(errors))
    census = network_census(network, trt)

    config = trt_builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    profile = trt_builder.create_optimization_profile()
    shapes = profile_shapes(image_size)
    profile.set_shape(NETWORK_INPUT.name, *(trt.Dims(list(shapes[k])) for k in ("min", "opt", "max")))
    config.add_optimization_profile(profile)
    if builder.for_triton:
        device = gpu()
        built_for = [device["sm"]] if device else []
        if version_compatible:
            config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    else:
        built_for = _set_rtx_targets(config, builder, list(targets or RTX_DEFAULT_TARGETS))

    cache_info = None
    cache_path = Path(timing_cache) if timing_cache is not None and builder.for_triton else None
    if cache_path is not None:
        cache_bytes = cache_path.read_bytes() if cache_path.is_file() else b""
        config.set_timing_cache(config.create_timing_cache(cache_bytes), False)
        cache_info = {"path": str(cache_path), "bytes_read": len(cache_bytes)}

    serialized = trt_builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"{builder.label} failed to build an engine from {onnx_path.name}: "
                               + ("; ".join(logger.errors) or "no error was logged"))
    engine_path.write_bytes(memoryview(serialized))
    if cache_path is not None and cache_info is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache = memoryview(config.get_timing_cache().serialize())
        tmp = cache_path.with_suffix(".tmp")
        tmp.write_bytes(cache)
        tmp.replace(cache_path)
        cache_info["bytes_written"] = len(cache)
    seconds = time.perf_counter() - started
    log.info("%s built %s from %s in %.1f s", builder.label, engine_path, onnx_path, seconds)
    info = builder.to_dict()
    if builder.for_triton:
        info["gpu"] = gpu()
        info["version_compatible"] = version_compatible
    return EngineBuild(engine_path, engine_path.stat().st_size, seconds, info, built_for, census, cache_info)


def _set_rtx_targets(config, builder: Builder, names: list[str]) -> list[str]:
    """Set the compute capabilities of a TensorRT-RTX build (an API of TensorRT-RTX only)."""
    capability = builder.module.ComputeCapability
    unknown = [n for n in names if not hasattr(capability, n)]
    if unknown:
        raise EngineBuildError(f"{builder.label} has no compute capability {', '.join(unknown)}; "
                               f"known: {', '.join(capability.__members__)}")
    config.num_compute_capabilities = len(names)
    for i, name in enumerate(names):
        config.set_compute_capability(getattr(capability, name), i)
    return names


def _runtime_engine(engine_path: Path, builder: Builder):
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = builder.module
    runtime = trt.Runtime(_logger(trt))
    engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
    if engine is None:
        raise EngineBuildError(f"{builder.label} could not deserialize {engine_path} (built by another "
                               "TensorRT version, for another GPU, or not an engine)")
    return engine


def inspect_engine(engine_path: str | Path, builder: Builder | None = None) -> dict[str, Any]:
    """Layers of a built engine by precision, from TensorRT's ``EngineInspector`` (needs a GPU)."""
    import json

    builder = builder or load_builder()
    if builder is None or not builder.can_run():
        raise EngineBuildError("inspecting an engine deserializes it, which needs a CUDA GPU")
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = builder.module
    inspector = _runtime_engine(Path(engine_path), builder).create_engine_inspector()
    info = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    layers = info.get("Layers", [])
    precisions: Counter[str] = Counter()
    for layer in layers:
        if isinstance(layer, dict):
            outputs = layer.get("Outputs") or [{}]
            precisions[str(outputs[0].get("Format/Datatype", "unknown")).split(" ")[0]] += 1
    return {"layers": len(layers), "by_output_precision": dict(precisions.most_common())}


_TORCH_DTYPES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT32": "int32", "INT8": "int8"}


def engine_runner(engine_path: str | Path, device: str = "cuda", builder: Builder | None = None,
                  output: str = NETWORK_OUTPUT.name) -> Runner:
    """Run a serialized engine as a :data:`banet.inference.Runner` (buffers are torch CUDA tensors).

    Float32 in and out whatever the engine's I/O dtypes (an FP16-I/O plan is fed and read in float16).
    ``output``: the engine's output tensor name (a Torch-TensorRT plan's is ``output0``). Needs a GPU
    the engine was built for.
    """
    import torch

    builder = builder or load_builder()
    if builder is None or not builder.can_run():
        raise EngineBuildError(f"running {engine_path} needs TensorRT and a CUDA GPU")
    engine_path = Path(engine_path)
    engine = _runtime_engine(engine_path, builder)
    context = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    if sorted(names) != sorted([NETWORK_INPUT.name, output]):
        raise EngineBuildError(f"{engine_path}: expected tensors {NETWORK_INPUT.name}, {output}; got {names}")
    dtypes = {n: getattr(torch, _TORCH_DTYPES[str(engine.get_tensor_dtype(n)).rsplit(".", 1)[-1].upper()])
              for n in names}

    def run(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(device, dtype=dtypes[NETWORK_INPUT.name])
        if not context.set_input_shape(NETWORK_INPUT.name, tuple(x.shape)):
            # outside the optimization profile (e.g. batch > MAX_BATCH_SIZE or another image size)
            raise EngineBuildError(f"{engine_path}: input shape {tuple(x.shape)} is outside the engine's "
                                   f"optimization profile (batch 1..{MAX_BATCH_SIZE})")
        dims = context.get_tensor_shape(output)
        y = torch.empty([dims[i] for i in range(len(dims))], dtype=dtypes[output], device=device)
        context.set_tensor_address(NETWORK_INPUT.name, x.data_ptr())
        context.set_tensor_address(output, y.data_ptr())
        stream = torch.cuda.current_stream(device)
        if not context.execute_async_v3(stream.cuda_stream):
            raise EngineBuildError(f"{engine_path}: execution failed for input {tuple(x.shape)}")
        stream.synchronize()
        return y.float().cpu().numpy()

    return run
