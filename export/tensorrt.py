"""ONNX -> TensorRT engine (GPU hosts with the ``tensorrt`` package only).

Written for the strongly typed path of TensorRT 10.x/11: the network is created with
``NetworkDefinitionCreationFlag.STRONGLY_TYPED``, so the precision comes from the ONNX graph
(FP32, FP16 casts or INT8 Q/DQ) and no FP16/INT8 builder flags or calibrators are used (TensorRT 11
removed them). One optimization profile covers batch 1..:data:`banet.spec.MAX_BATCH_SIZE` (the
Triton ``max_batch_size``), tuned for :data:`banet.spec.OPT_BATCH_SIZE`. A timing cache beside the
engines makes rebuilds fast. Loader style after Polygraphy: network from ONNX -> engine bytes.

Where TensorRT is absent, :func:`trtexec_command` gives the exact command that builds the same
engine on a GPU host.
"""

from __future__ import annotations

import importlib.util
import logging
import shlex
from pathlib import Path

import numpy as np

from banet.inference import Runner
from banet.spec import MAX_BATCH_SIZE, OPT_BATCH_SIZE, network_tensors, sized

log = logging.getLogger(__name__)

DEFAULT_WORKSPACE_GIB = 4.0


class EngineBuildError(RuntimeError):
    """TensorRT could not parse the ONNX file or build/run the engine; the message names the file."""


def available() -> bool:
    """True when ``tensorrt`` is importable and a CUDA GPU is visible (needed to build engines)."""
    if importlib.util.find_spec("tensorrt") is None:
        return False
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def unavailable_reason() -> str:
    if importlib.util.find_spec("tensorrt") is None:
        return "the tensorrt Python package is not installed"
    return "no CUDA GPU is visible"


def profile_shapes(image_size: int, *, io: str = "float32") -> dict[str, tuple[int, ...]]:
    """min/opt/max input shapes of the optimization profile: ``(B, 3, S, S)``, or ``(B, S, S, 3)`` for
    the uint8 serving variant (names, dtypes and layouts from :func:`banet.spec.network_tensors`)."""
    item = sized(network_tensors(io)[0], image_size).shape
    return {"min": (1, *item), "opt": (OPT_BATCH_SIZE, *item), "max": (MAX_BATCH_SIZE, *item)}


def trtexec_command(onnx_path: str | Path, engine_path: str | Path, *, image_size: int,
                    timing_cache: str | Path | None = None,
                    workspace_gib: float = DEFAULT_WORKSPACE_GIB, io: str = "float32") -> str:
    """The ``trtexec`` command line that builds the same engine as :func:`build_engine`."""
    name = network_tensors(io)[0].name
    shapes = {k: f"{name}:" + "x".join(map(str, v)) for k, v in profile_shapes(image_size, io=io).items()}
    argv = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}",
            f"--minShapes={shapes['min']}", f"--optShapes={shapes['opt']}", f"--maxShapes={shapes['max']}",
            "--stronglyTyped", f"--memPoolSize=workspace:{int(workspace_gib * 1024)}M"]
    if timing_cache is not None:
        argv.append(f"--timingCacheFile={timing_cache}")
    return shlex.join(argv)


def build_engine(onnx_path: str | Path, engine_path: str | Path, *, image_size: int,
                 timing_cache: str | Path | None = None,
                 workspace_gib: float = DEFAULT_WORKSPACE_GIB, io: str = "float32") -> Path:
    """Parse ``onnx_path`` into a strongly typed network, build and save a serialized engine."""
    import tensorrt as trt

    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT could not parse {onnx_path}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    profile = builder.create_optimization_profile()
    shapes = profile_shapes(image_size, io=io)
    profile.set_shape(network_tensors(io)[0].name, *(trt.Dims(list(shapes[k])) for k in ("min", "opt", "max")))
    config.add_optimization_profile(profile)

    cache_path = Path(timing_cache) if timing_cache is not None else None
    cache_bytes = cache_path.read_bytes() if cache_path is not None and cache_path.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    engine_path.write_bytes(memoryview(serialized))
    if cache_path is not None:
        cache_path.write_bytes(memoryview(config.get_timing_cache().serialize()))
    log.info("built TensorRT engine %s from %s", engine_path, onnx_path)
    return engine_path


def engine_runner(engine_path: str | Path, device: str = "cuda", *, io: str = "float32") -> Runner:
    """Run a serialized engine as a :data:`banet.inference.Runner` (buffers are torch CUDA tensors).

    ``io="uint8"``: an engine built from the serving graph, ``(B, S, S, 3)`` uint8 -> ``(B, 1, S, S)`` float16.
    Not run here: no CUDA device on the development machines or CI (type-checked against the stubs).
    """
    import tensorrt as trt
    import torch

    engine_path = Path(engine_path)
    tensor_in, tensor_out = network_tensors(io)
    torch_dtype = {"float32": torch.float32, "float16": torch.float16, "uint8": torch.uint8}
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
    if engine is None:
        raise EngineBuildError(f"could not deserialize TensorRT engine {engine_path}")
    context = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    if sorted(names) != sorted([tensor_in.name, tensor_out.name]):
        raise EngineBuildError(f"{engine_path}: expected tensors {tensor_in.name}, {tensor_out.name}; got {names}")

    def run(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=tensor_in.dtype)).to(device)
        if not context.set_input_shape(tensor_in.name, tuple(x.shape)):
            # outside the optimization profile (e.g. batch > MAX_BATCH_SIZE or another image size)
            raise EngineBuildError(f"{engine_path}: input shape {tuple(x.shape)} is outside the engine's "
                                   f"optimization profile (batch 1..{MAX_BATCH_SIZE})")
        dims = context.get_tensor_shape(tensor_out.name)
        out_shape = [dims[i] for i in range(len(dims))]
        y = torch.empty(out_shape, dtype=torch_dtype[tensor_out.dtype], device=device)
        context.set_tensor_address(tensor_in.name, x.data_ptr())
        context.set_tensor_address(tensor_out.name, y.data_ptr())
        stream = torch.cuda.current_stream(device)
        if not context.execute_async_v3(stream.cuda_stream):
            raise EngineBuildError(f"{engine_path}: execution failed for input {tuple(x.shape)}")
        stream.synchronize()
        return y.cpu().numpy()

    return run
