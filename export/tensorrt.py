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
- The engine's I/O (names, TensorRT dtypes, shapes with -1, the profile's min/opt/max) is read from the
  parsed network (:func:`network_tensors_of`) and recorded in the manifest; the Triton config writer
  (export/repository.py), :func:`engine_runner` and the bench take names and dtypes from that record or
  from the engine itself, through the one dtype table :data:`banet.spec.TENSORRT_DTYPES`.
- *Can run* is decided per engine (:func:`engine_runnable`): the visible GPU's compute capability
  against the engine's targets, and for version-compatible plans whether the runtime may run their
  embedded host code.

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
from banet.spec import (MAX_BATCH_SIZE, OPT_BATCH_SIZE, TENSORRT_DTYPES, network_tensors, sized,
                        triton_dtype)

log = logging.getLogger(__name__)

DEFAULT_WORKSPACE_GIB = 4.0
BUILDERS = ("tensorrt", "tensorrt_rtx")
"""``tensorrt``: data-center TensorRT (Triton ``tensorrt_plan``); ``tensorrt_rtx``: TensorRT for RTX."""
_MODULES = {"tensorrt": ("tensorrt",), "tensorrt_rtx": ("tensorrt_rtx_bindings", "tensorrt_rtx")}
RTX_DEFAULT_TARGETS = ("SM80", "SM86", "SM89", "SM120")
"""The compute capabilities a TensorRT-RTX engine is built for unless told otherwise: the library's
documented default (A100, RTX 30xx, RTX 40xx, RTX 50xx), set explicitly so the manifest is exact.
SM75 (Turing) may be added; SM 9.0 (H100/H200) does not exist in TensorRT-RTX."""
_LAYER_LOG = "Layers:\n"
"""TensorRT-RTX logs the built engine's layer information (the engine inspector's one-line form) at VERBOSE
level, starting with this line, when the build config's ``profiling_verbosity`` is ``DETAILED`` (seen with
TensorRT-RTX 1.7.1 on a CPU-only AOT build; with the default ``LAYER_NAMES_ONLY`` it logs nothing)."""
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
        """A CUDA GPU is visible (engines need one to deserialize and run, also TensorRT-RTX ones).

        Necessary, not sufficient: whether a given engine runs on that GPU is :func:`engine_runnable`'s call.
        """
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


def profile_shapes(image_size: int, *, io: str = "float32") -> dict[str, tuple[int, ...]]:
    """min/opt/max input shapes of the optimization profile: ``(B, 3, S, S)``, or ``(B, S, S, 3)`` for
    the uint8 serving variant (names, dtypes and layouts from :func:`banet.spec.network_tensors`)."""
    item = sized(network_tensors(io)[0], image_size).shape
    return {"min": (1, *item), "opt": (OPT_BATCH_SIZE, *item), "max": (MAX_BATCH_SIZE, *item)}


def trtexec_command(onnx_path: str | Path, engine_path: str | Path, *, image_size: int,
                    timing_cache: str | Path | None = None,
                    workspace_gib: float = DEFAULT_WORKSPACE_GIB, version_compatible: bool = False,
                    io: str = "float32") -> str:
    """The ``trtexec`` command line that builds the same engine as :func:`build_engine` with TensorRT.

    Run it with the TensorRT of the Triton container that will serve the plan (docs/serving.md).
    """
    name = network_tensors(io)[0].name
    shapes = {k: f"{name}:" + "x".join(map(str, v)) for k, v in profile_shapes(image_size, io=io).items()}
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
                self.layers: str | None = None
                self.cpu_aot = False

            def log(self, severity, msg) -> None:
                if severity == trt.ILogger.Severity.VERBOSE and msg.startswith(_LAYER_LOG):
                    self.layers = msg  # TensorRT-RTX's engine information, logged once per build
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
    logger.layers = None
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
    tensors: list[dict[str, Any]] = field(default_factory=list)
    """The engine's I/O as the builder's network declares it (:func:`network_tensors_of`)."""
    layers: dict[str, Any] | None = None
    """The built engine's layers by output precision from the builder's own DETAILED layer log
    (:func:`layer_precisions_from_log`; TensorRT-RTX), None where the builder logs none."""

    def to_dict(self) -> dict[str, Any]:
        return {"bytes": self.bytes, "build_seconds": self.seconds, **self.builder, "targets": self.targets,
                "network": self.network, "timing_cache": self.timing_cache, "tensors": self.tensors,
                "layers": self.layers}


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
                 version_compatible: bool = False, io: str = "float32") -> EngineBuild:
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
    # DETAILED: the engine inspector (and TensorRT-RTX's build log) then give each layer's precision and
    # formats; the default LAYER_NAMES_ONLY gives names only (IBuilderConfig.profiling_verbosity)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    profile = trt_builder.create_optimization_profile()
    # io="uint8": the serving graph, image_u8 (B, S, S, 3) uint8 -> probability float16 (export/serving_graph.py)
    shapes = profile_shapes(image_size, io=io)
    profile.set_shape(network_tensors(io)[0].name, *(trt.Dims(list(shapes[k])) for k in ("min", "opt", "max")))
    config.add_optimization_profile(profile)
    tensors = network_tensors_of(network, profile)
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
    info["version_compatible"] = bool(version_compatible and builder.for_triton)
    if builder.for_triton:
        info["gpu"] = gpu()
    layers = layer_precisions_from_log(logger.layers) if logger.layers else None
    return EngineBuild(engine_path, engine_path.stat().st_size, seconds, info, built_for, census, cache_info,
                       tensors, layers)


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


def dtype_name(dtype) -> str:
    """The name of a TensorRT ``DataType`` (``UINT8``, ``HALF``, ...), whichever TensorRT module it is from."""
    return str(getattr(dtype, "name", None) or str(dtype).rsplit(".", 1)[-1]).upper()


def io_dtype(tensorrt_dtype: str) -> str:
    """The dtype name (numpy's / torch's) of an engine I/O tensor of TensorRT type ``tensorrt_dtype``.

    Raises :class:`EngineBuildError` for a type no engine of this project has as I/O (FP8, FP4, INT4, E8M0).
    """
    if tensorrt_dtype not in TENSORRT_DTYPES:
        raise EngineBuildError(f"engine I/O of TensorRT type {tensorrt_dtype} has no torch/Triton counterpart here "
                               f"(known: {', '.join(TENSORRT_DTYPES)})")
    return TENSORRT_DTYPES[tensorrt_dtype]


def torch_dtype(tensorrt_dtype: str):
    """The ``torch.dtype`` of an engine I/O tensor of TensorRT type ``tensorrt_dtype`` (via :func:`io_dtype`)."""
    import torch

    return getattr(torch, io_dtype(tensorrt_dtype))


def _tensor_record(name: str, mode: str, dtype, shape, profile: list | None) -> dict[str, Any]:
    trt_name = dtype_name(dtype)
    record: dict[str, Any] = {"name": name, "mode": mode, "tensorrt_dtype": trt_name,
                              "shape": [int(shape[i]) for i in range(len(shape))]}
    if trt_name in TENSORRT_DTYPES:
        record["dtype"] = TENSORRT_DTYPES[trt_name]
        record["triton_dtype"] = triton_dtype(record["dtype"])
    if profile:
        record["profile"] = {k: [int(d[i]) for i in range(len(d))] for k, d in zip(("min", "opt", "max"), profile)}
    return record


def network_tensors_of(network, profile=None) -> list[dict[str, Any]]:
    """The I/O of a parsed ``INetworkDefinition`` as the builder declares it, inputs first.

    Each: ``name``, ``mode`` (input/output), ``tensorrt_dtype`` (``UINT8``...), ``dtype`` and
    ``triton_dtype`` (from :data:`banet.spec.TENSORRT_DTYPES`; absent for a type with no counterpart),
    ``shape`` with -1 for the dynamic axes, and for inputs the ``profile``'s ``min``/``opt``/``max``.
    """
    tensors = []
    for i in range(network.num_inputs):
        t = network.get_input(i)
        tensors.append(_tensor_record(t.name, "input", t.dtype, t.shape,
                                      profile.get_shape(t.name) if profile is not None else None))
    for i in range(network.num_outputs):
        t = network.get_output(i)
        tensors.append(_tensor_record(t.name, "output", t.dtype, t.shape, None))
    return tensors


def engine_tensors(engine) -> list[dict[str, Any]]:
    """The I/O of a deserialized ``ICudaEngine`` in the form of :func:`network_tensors_of` (profile 0)."""
    tensors = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        mode = "input" if dtype_name(engine.get_tensor_mode(name)) == "INPUT" else "output"
        profile = engine.get_tensor_profile_shape(name, 0) if mode == "input" else None
        tensors.append(_tensor_record(name, mode, engine.get_tensor_dtype(name), engine.get_tensor_shape(name),
                                      profile))
    return sorted(tensors, key=lambda t: t["mode"] != "input")


def check_engine_io(tensors: list[dict[str, Any]], io: str, *, output: str | None = None,
                    image_size: int | None = None) -> list[str]:
    """How an engine's I/O (:func:`network_tensors_of` records) differs from what the served network must
    have (:func:`banet.spec.network_tensors` for ``io``; ``output`` renames the output): an empty list when
    it matches. Checks names, dtypes, the static dims and that every dtype has a torch and Triton type."""
    want_in, want_out = network_tensors(io)
    wanted = [(want_in, "input", want_in.name), (want_out, "output", output or want_out.name)]
    problems = [f"{t['name']}: TensorRT type {t['tensorrt_dtype']} has no torch/Triton counterpart"
                for t in tensors if "dtype" not in t]
    for spec_tensor, mode, name in wanted:
        found = [t for t in tensors if t["mode"] == mode]
        if len(found) != 1:
            problems.append(f"expected one {mode} tensor, the engine has {[t['name'] for t in found]}")
            continue
        t = found[0]
        if t["name"] != name:
            problems.append(f"{mode} is named {t['name']!r}, expected {name!r}")
        if "dtype" in t and t["dtype"] != spec_tensor.dtype:
            problems.append(f"{mode} {t['name']!r} is {t['dtype']}, expected {spec_tensor.dtype}")
        if image_size is not None:
            dims = tuple(sized(spec_tensor, image_size).shape)
            if tuple(t["shape"][1:]) != dims:
                problems.append(f"{mode} {t['name']!r} has dims {t['shape'][1:]}, expected {list(dims)}")
    return problems


# --- can this engine run on the visible GPU? -----------------------------------------------------------
def runtime_allows_host_code(builder: Builder) -> bool:
    """Whether ``builder``'s ``Runtime`` can be allowed to run an engine's embedded host code, which a
    version-compatible plan needs (``Runtime.engine_host_code_allowed``, TensorRT >= 8.6)."""
    return hasattr(builder.module.Runtime, "engine_host_code_allowed")


def engine_runnable(builder: Builder, *, targets: list[str], version_compatible: bool = False,
                    device: dict[str, Any] | None = None) -> tuple[bool, str]:
    """Can an engine that ``builder`` made for compute capabilities ``targets`` run on ``device``
    (default: the visible GPU, :func:`gpu`)? Returns (verdict, reason).

    - no GPU visible: no;
    - TensorRT-RTX: the GPU's ``SMxy`` must be one of the engine's targets; TensorRT-RTX has no SM 9.0
      target, so an H100/H200 runs none of its engines;
    - data-center TensorRT: a plan is built for the GPU it was built on (``targets``), and a
      version-compatible one embeds the lean runtime as host code, which the runtime must be allowed to
      run (``runtime_allows_host_code``; :func:`_runtime_engine` allows it, as Triton's tensorrt_backend
      does in ``src/loader.cc``).
    """
    device = device if device is not None else gpu()
    if device is None:
        return False, "no CUDA GPU is visible"
    where = f"{device['name']} ({device['sm']}, compute capability {device['compute_capability']})"
    if targets and device["sm"] not in targets:
        if not builder.for_triton:
            extra = "; TensorRT-RTX has no SM90 target: H100/H200 need the data-center TensorRT" \
                if device["sm"].startswith("SM9") else ""
            return False, f"{builder.label} engine built for {', '.join(targets)}, not for {where}{extra}"
        return False, f"{builder.label} plan built for {', '.join(targets)}, not for {where}"
    if version_compatible and not runtime_allows_host_code(builder):
        return False, (f"version-compatible plan: {builder.label}'s runtime cannot allow the engine's host code "
                       "(Runtime.engine_host_code_allowed), so it cannot deserialize it")
    return True, f"runs on {where}"


def _runtime_engine(engine_path: Path, builder: Builder):
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = builder.module
    runtime = trt.Runtime(_logger(trt))
    # a version-compatible plan embeds the lean runtime as host code, which a runtime refuses unless allowed
    # (default False); Triton's tensorrt_backend allows it the same way (src/loader.cc)
    if runtime_allows_host_code(builder):
        runtime.engine_host_code_allowed = True
    engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
    if engine is None:
        raise EngineBuildError(f"{builder.label} could not deserialize {engine_path} (built by another "
                               "TensorRT version, for another GPU, or not an engine)")
    return engine


def read_engine_tensors(engine_path: str | Path, builder: Builder | None = None) -> list[dict[str, Any]]:
    """The I/O of a serialized engine, read from the engine itself (deserializing it needs a CUDA GPU)."""
    builder = builder or load_builder()
    if builder is None or not builder.can_run():
        raise EngineBuildError(f"reading {engine_path} deserializes it, which needs TensorRT and a CUDA GPU")
    return engine_tensors(_runtime_engine(Path(engine_path), builder))


# --- the built engine's layers by precision --------------------------------------------------------------
_PRECISION_WORDS = (("uint8", "UINT8"), ("int8", "INT8"), ("int32", "INT32"), ("int64", "INT64"),
                    ("bfloat16", "BF16"), ("bf16", "BF16"), ("fp16", "HALF"), ("half", "HALF"), ("fp32", "FLOAT"), ("float", "FLOAT"),
                    ("fp8", "FP8"), ("fp4", "FP4"), ("int4", "INT4"), ("bool", "BOOL"))


def _precision(text: str) -> str:
    """A TensorRT DataType name from an inspector's datatype text: TensorRT 11 / TensorRT-RTX give the type
    alone (``Half``, ``UInt8``), TensorRT 10 a format sentence (``Row major linear FP16 format``,
    ``Thirty-two wide channel vectorized row major Int8 format.``, ``Float``)."""
    lowered = text.lower()
    for word in lowered.replace("/", " ").replace(".", " ").split():
        for key, name in _PRECISION_WORDS:
            if word == key:
                return name
    for key, name in _PRECISION_WORDS:  # fused spellings
        if key in lowered:
            return name
    return "unknown"


def layer_precisions(info: dict[str, Any] | str) -> dict[str, Any]:
    """Layers of an engine by the precision of their first output, from the engine inspector's JSON
    (``EngineInspector.get_engine_information(LayerInformationFormat.JSON)``), in either form:

    - TensorRT 10: ``{"Layers": [{..., "Outputs": [{"Format/Datatype": "Row major linear FP16 format"}]}],
      "Bindings": ["image", ...]}``;
    - TensorRT 11 and TensorRT-RTX: the tensor's type in its own field (``"Datatype": "Half"``, beside
      ``"Format"``), and ``"I/O Tensors"`` (objects with ``DataType``) instead of ``"Bindings"``
      (TensorRT docs, "Migrating IEngineInspector Usage from TensorRT 10.x to 11.x").

    A build without ``ProfilingVerbosity.DETAILED`` lists layer names only (strings): they count in
    ``layers`` and under ``names_only``, and ``by_output_precision`` stays empty.
    """
    import json

    data = json.loads(info) if isinstance(info, str) else info
    layers = data.get("Layers", [])
    precisions: Counter[str] = Counter()
    names_only = 0
    for layer in layers:
        if not isinstance(layer, dict):
            names_only += 1
            continue
        outputs = [o for o in layer.get("Outputs") or [] if isinstance(o, dict)]
        if not outputs:
            continue
        first = outputs[0]
        text = first.get("Datatype") or first.get("DataType") or first.get("Format/Datatype") or ""
        precisions[_precision(str(text))] += 1
    io = data.get("I/O Tensors")
    return {"layers": len(layers), "by_output_precision": dict(precisions.most_common()), "names_only": names_only,
            "form": "tensorrt11" if io is not None else "tensorrt10" if "Bindings" in data else "unknown",
            "io_tensors": [t.get("Name") for t in io] if io else data.get("Bindings", [])}


def layer_precisions_from_log(text: str) -> dict[str, Any]:
    """Layers by first-output precision from TensorRT-RTX's build log (:data:`_LAYER_LOG`): the inspector's
    one-line form, one layer per line (``Name: ..., LayerType: ..., Inputs: [...], Constants: [...],
    Outputs: [ { Name: ..., Datatype: Half, Format: ... }], TacticName: ...``), then ``I/O Tensors:``."""
    import re

    precisions: Counter[str] = Counter()
    layers = 0
    for line in text.split("\n\nI/O Tensors:", 1)[0].splitlines():
        if not line.startswith("Name: "):
            continue
        layers += 1
        outputs = re.search(r"Outputs: \[(.*?)\], TacticName:", line)
        found = re.search(r"Datatype: ([\w]+)", outputs.group(1)) if outputs else None
        if found:
            precisions[_precision(found.group(1))] += 1
    return {"layers": layers, "by_output_precision": dict(precisions.most_common()),
            "source": "builder log (ProfilingVerbosity.DETAILED)"}


def inspect_engine(engine_path: str | Path, builder: Builder | None = None) -> dict[str, Any]:
    """Layers of a built engine by precision, from TensorRT's ``EngineInspector`` (needs a GPU)."""
    builder = builder or load_builder()
    if builder is None or not builder.can_run():
        raise EngineBuildError("inspecting an engine deserializes it, which needs a CUDA GPU")
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = builder.module
    inspector = _runtime_engine(Path(engine_path), builder).create_engine_inspector()
    return {**layer_precisions(inspector.get_engine_information(trt.LayerInformationFormat.JSON)),
            "source": "engine inspector"}


def engine_runner(engine_path: str | Path, device: str = "cuda", builder: Builder | None = None,
                  output: str | None = None, *, io: str = "float32") -> Runner:
    """Run a serialized engine as a :data:`banet.inference.Runner` (buffers are torch CUDA tensors).

    Names and dtypes are the engine's own (:func:`engine_tensors`, one input and one output), mapped to
    torch by :data:`banet.spec.TENSORRT_DTYPES`; where they differ from the spec's (:func:`check_engine_io`)
    a warning says how, and the engine runs with its own names. ``io="float32"``: fed float32
    ``(B, 3, S, S)`` (cast to an FP16-I/O plan's input type), returns float32. ``io="uint8"``: an engine of
    the serving graph, fed uint8 ``(B, S, S, 3)``, returning its float16 probability as it is. ``output``:
    the output name the caller expects (a Torch-TensorRT plan's is ``output0``). Needs a GPU the engine can
    run on (:func:`engine_runnable`); not run here: no CUDA device.
    """
    import torch

    builder = builder or load_builder()
    if builder is None or not builder.can_run():
        raise EngineBuildError(f"running {engine_path} needs TensorRT and a CUDA GPU")
    engine_path = Path(engine_path)
    engine = _runtime_engine(engine_path, builder)
    tensors = engine_tensors(engine)
    problems = check_engine_io(tensors, io, output=output)
    if problems:
        log.warning("%s: I/O differs from the spec: %s", engine_path, "; ".join(problems))
    inputs = [t for t in tensors if t["mode"] == "input"]
    outputs = [t for t in tensors if t["mode"] == "output"]
    if len(inputs) != 1 or len(outputs) != 1:
        raise EngineBuildError(f"{engine_path}: expected one input and one output tensor, got "
                               f"{[t['name'] for t in tensors]}")
    name_in, name_out = inputs[0]["name"], outputs[0]["name"]
    dtype_in, dtype_out = torch_dtype(inputs[0]["tensorrt_dtype"]), torch_dtype(outputs[0]["tensorrt_dtype"])
    feed = network_tensors(io)[0].dtype
    context = engine.create_execution_context()

    def run(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=feed)).to(device, dtype=dtype_in)
        if not context.set_input_shape(name_in, tuple(x.shape)):
            # outside the optimization profile (e.g. batch > MAX_BATCH_SIZE or another image size)
            raise EngineBuildError(f"{engine_path}: input shape {tuple(x.shape)} is outside the engine's "
                                   f"optimization profile (batch 1..{MAX_BATCH_SIZE})")
        dims = context.get_tensor_shape(name_out)
        y = torch.empty([dims[i] for i in range(len(dims))], dtype=dtype_out, device=device)
        context.set_tensor_address(name_in, x.data_ptr())
        context.set_tensor_address(name_out, y.data_ptr())
        stream = torch.cuda.current_stream(device)
        if not context.execute_async_v3(stream.cuda_stream):
            raise EngineBuildError(f"{engine_path}: execution failed for input {tuple(x.shape)}")
        stream.synchronize()
        return y.float().cpu().numpy() if io == "float32" else y.cpu().numpy()

    return run
