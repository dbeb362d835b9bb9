"""Every backend behind one small interface, so the bench times and scores them the same way.

A :class:`Backend` has a ``name``, says whether it can run here (``available() -> (ok, reason)``),
is prepared once per batch size, and splits a call into an untimed ``stage`` (host -> device,
dtype, layout), the timed ``run`` and an untimed ``masks`` (back to uint8 masks at each image's
original size, for parity). ``synchronize`` makes the host clock honest on CUDA.

Tensor backends map ``(B, 3, S, S)`` float32 to logits ``(B, 1, S, S)``; end-to-end backends
(Triton) take the encoded image files and return masks.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from banet import processing
from banet.spec import MASK_THRESHOLD

from bench.inputs import Batch

log = logging.getLogger(__name__)


@runtime_checkable
class Backend(Protocol):
    name: str
    precision: str
    device: str
    end_to_end: bool

    def available(self) -> tuple[bool, str]: ...
    def prepare(self, batch_size: int) -> None: ...
    def stage(self, batch: Batch) -> Any: ...
    def run(self, staged: Any) -> Any: ...
    def synchronize(self) -> None: ...
    def masks(self, output: Any, batch: Batch, threshold: float = MASK_THRESHOLD) -> list[np.ndarray]: ...
    def close(self) -> None: ...


class TensorBackend:
    """Shared behaviour of backends whose ``run`` returns logits ``(B, 1, S, S)``."""

    name = "tensor"
    precision = "fp32"
    device = "cpu"
    end_to_end = False

    def available(self) -> tuple[bool, str]:
        return True, ""

    def prepare(self, batch_size: int) -> None:
        pass

    def stage(self, batch: Batch) -> Any:
        return np.ascontiguousarray(batch.tensor)

    def synchronize(self) -> None:
        pass

    def logits(self, output: Any) -> np.ndarray:
        return np.asarray(output, dtype=np.float32)

    def masks(self, output: Any, batch: Batch, threshold: float = MASK_THRESHOLD) -> list[np.ndarray]:
        logits = self.logits(output)
        return [processing.postprocess(lg, size, threshold) for lg, size in zip(logits, batch.sizes)]

    def close(self) -> None:
        pass


# --- PyTorch ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TorchVariant:
    """One way of running the PyTorch model: precision, memory layout, CUDA graph, torch.compile."""

    precision: str = "fp32"  # fp32 | fp16 | bf16 (fp16/bf16 through autocast)
    channels_last: bool = False
    cuda_graph: bool = False
    compile: bool = False
    device: str = "cpu"

    @property
    def name(self) -> str:
        parts = ["torch", self.precision]
        if self.channels_last:
            parts.append("cl")
        if self.cuda_graph:
            parts.append("cudagraph")
        if self.compile:
            parts.append("compile")
        return "-".join(parts) + f"@{self.device}"


class TorchBackend(TensorBackend):
    """BA-Net in PyTorch; ``TorchVariant()`` (FP32 eager) is the reference for parity."""

    def __init__(self, model, variant: TorchVariant = TorchVariant()):
        self.variant = variant
        self.name = variant.name
        self.precision = variant.precision
        self.device = variant.device
        self._source = model
        self._model = None
        self._graph = None
        self._static_in = self._static_out = None

    def available(self) -> tuple[bool, str]:
        import torch

        v = self.variant
        if v.device.startswith("cuda") and not torch.cuda.is_available():
            built = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            return False, f"no CUDA device (torch {torch.__version__}, {built})"
        if (v.cuda_graph or v.compile) and not v.device.startswith("cuda"):
            what = "CUDA graphs" if v.cuda_graph else "torch.compile"
            return False, f"{what} are measured on CUDA only (issue scope); no CUDA device here"
        if v.precision not in ("fp32", "fp16", "bf16"):
            return False, f"unknown precision {v.precision!r}"
        if v.precision != "fp32":
            try:  # some CPU builds have no half-precision convolution kernels under autocast
                x = torch.zeros(1, 3, 8, 8, device=v.device)
                conv = torch.nn.Conv2d(3, 4, 3).to(v.device)
                with torch.inference_mode(), torch.autocast(self._autocast_device, dtype=self._dtype):
                    conv(x)
            except (RuntimeError, TypeError) as err:
                return False, f"autocast {v.precision} not supported on {v.device}: {err}"
        return True, ""

    @property
    def _autocast_device(self) -> str:
        return "cuda" if self.variant.device.startswith("cuda") else "cpu"

    @property
    def _dtype(self):
        import torch

        return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[self.variant.precision]

    def prepare(self, batch_size: int) -> None:
        import torch

        v = self.variant
        if self._model is None:
            model = copy.deepcopy(self._source).eval().to(v.device)
            if v.channels_last:
                model = model.to(memory_format=torch.channels_last)
            if v.compile:
                model = torch.compile(model)  # default mode: compile time stays in seconds, not minutes
            self._model = model
        # CUDA graphs are captured at the first run() of this batch size, from the staged input's
        # shape (the bench's image size, not necessarily spec.IMAGE_SIZE); warmup calls absorb it
        self._graph = None

    def _forward(self, x):
        import torch

        if self.variant.precision == "fp32":
            return self._model(x)
        with torch.autocast(self._autocast_device, dtype=self._dtype):
            return self._model(x)

    def _capture(self, shape: tuple[int, ...]) -> None:
        import torch

        self._static_in = torch.zeros(shape, device=self.variant.device)
        if self.variant.channels_last:
            self._static_in = self._static_in.contiguous(memory_format=torch.channels_last)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(3):  # warm the allocator and cuDNN autotuning before capture
                self._forward(self._static_in)
        torch.cuda.current_stream().wait_stream(stream)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph), torch.inference_mode():
            self._static_out = self._forward(self._static_in)

    def stage(self, batch: Batch):
        import torch

        x = torch.from_numpy(np.ascontiguousarray(batch.tensor)).to(self.variant.device)
        if self.variant.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def run(self, staged):
        import torch

        if self.variant.cuda_graph and (self._graph is None or self._static_in.shape != staged.shape):
            self._capture(tuple(staged.shape))
        if self._graph is not None:
            self._static_in.copy_(staged)
            self._graph.replay()
            return self._static_out
        with torch.inference_mode():
            return self._forward(staged)

    def synchronize(self) -> None:
        import torch

        if self.variant.device.startswith("cuda"):
            torch.cuda.synchronize()

    def logits(self, output) -> np.ndarray:
        if isinstance(output, np.ndarray):
            return output.astype(np.float32, copy=False)
        return output.float().cpu().numpy()

    def close(self) -> None:
        self._model = self._graph = self._static_in = self._static_out = None


def torch_variants(device: str) -> list[TorchVariant]:
    """The PyTorch paths the issue names, for ``device`` (CUDA-only ones are listed, then skipped)."""
    cuda = "cuda" if device == "cpu" else device
    return [
        TorchVariant("fp32", device=device),
        TorchVariant("fp16", device=device),
        TorchVariant("bf16", device=device),
        TorchVariant("fp32", channels_last=True, device=device),
        TorchVariant("fp16", channels_last=True, cuda_graph=True, device=cuda),
        TorchVariant("fp16", channels_last=True, compile=True, device=cuda),
    ]


# --- backends that are not built -------------------------------------------------------------------
class Unavailable(TensorBackend):
    """A backend that cannot run here, kept so that the report lists it with the reason."""

    def __init__(self, name: str, reason: str, precision: str = "-", device: str = "-", end_to_end: bool = False):
        self.name, self.reason, self.precision, self.device, self.end_to_end = name, reason, precision, device, end_to_end

    def available(self) -> tuple[bool, str]:
        return False, self.reason

    def run(self, staged):  # pragma: no cover - never called: available() is False
        raise RuntimeError(f"{self.name} is not available: {self.reason}")


# --- backends that come as an export Runner (ONNX Runtime, TensorRT engines, Torch-TensorRT) ------
class RunnerBackend(TensorBackend):
    """A backend built by one of ``export``'s runner factories (``(B, 3, S, S)`` -> logits, numpy).

    The runner is created once, on first ``prepare``; its timed call includes the host <-> device
    copies the runner makes (ONNX Runtime on CPU: none).
    """

    def __init__(self, name: str, precision: str, device: str, factory, check=lambda: (True, "")):
        self.name, self.precision, self.device = name, precision, device
        self._factory, self._check, self._runner = factory, check, None

    def available(self) -> tuple[bool, str]:
        return self._check()

    def prepare(self, batch_size: int) -> None:
        if self._runner is None:
            self._runner = self._factory()

    def run(self, staged):
        return self._runner(staged)

    def close(self) -> None:
        self._runner = None


ORT_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def ort_backend(path: str | Path, precision: str, device: str = "cpu", threads: int | None = None) -> Backend:
    """ONNX Runtime on one exported artifact, through ``export.onnxruntime.ort_runner``."""
    provider = ORT_PROVIDERS[device]
    name = f"ort-{precision}@{device}" + (f"-t{threads}" if threads else "")

    def check() -> tuple[bool, str]:
        if importlib.util.find_spec("onnxruntime") is None:
            return False, "onnxruntime is not installed"
        import onnxruntime

        if provider not in onnxruntime.get_available_providers():
            return False, f"{provider} not in this onnxruntime build ({onnxruntime.get_available_providers()})"
        if not Path(path).is_file():
            return False, f"artifact not found: {path}"
        return True, ""

    def factory():
        from export.onnxruntime import ort_runner

        return ort_runner(path, providers=[provider], threads=threads)

    return RunnerBackend(name, precision, device, factory, check)


def tensorrt_backend(engine_path: str | Path | None, precision: str,
                     engine: dict[str, Any] | None = None) -> Backend:
    """A TensorRT engine through ``export.tensorrt.engine_runner`` (GPU hosts only).

    ``engine``: the export manifest's record of it (``banet-export`` writes one per engine): its compute
    targets and version compatibility decide, through the export's own runtime gate
    (``export.tensorrt.engine_runnable``), whether the visible GPU can run it (a TensorRT-RTX engine cannot
    run on an H100/H200: it has no SM 9.0 target), and its ``io`` says how to feed it (uint8 serving engines).
    """
    name = f"tensorrt-{precision}@cuda"
    record = engine or {}

    def check() -> tuple[bool, str]:
        from export import tensorrt

        builder = tensorrt.load_builder()
        if builder is None:
            return False, tensorrt.unavailable_reason()
        if not builder.can_run():  # TensorRT-RTX builds without a GPU; nothing runs without one
            return False, f"running a tensorrt engine needs a CUDA GPU and none is visible ({builder.label} is installed)"
        if engine_path is None or not Path(engine_path).is_file():
            return False, f"no {precision} TensorRT engine in the artifacts ({engine_path})"
        if record.get("targets") is not None:
            runnable, why = tensorrt.engine_runnable(builder, targets=list(record["targets"]),
                                                     version_compatible=bool(record.get("version_compatible")))
            if not runnable:
                return False, why
        return True, ""

    def factory():
        from export.tensorrt import engine_runner

        return engine_runner(engine_path, io=record.get("io", "float32"))

    return RunnerBackend(name, precision, "cuda", factory, check)


def torch_tensorrt_backend(model, precision: str, image_size: int) -> Backend:
    """A Torch-TensorRT module compiled in process (``export.torch_tensorrt.compiled_runner``)."""
    name = f"torch_tensorrt-{precision}@cuda"

    def check() -> tuple[bool, str]:
        from export import torch_tensorrt

        if not torch_tensorrt.available():
            return False, torch_tensorrt.unavailable_reason()
        return True, ""

    def factory():
        from export.torch_tensorrt import compiled_runner

        return compiled_runner(copy.deepcopy(model), precision=precision, image_size=image_size)

    return RunnerBackend(name, precision, "cuda", factory, check)
