"""PyTorch module -> TensorRT through Torch-TensorRT (dynamo IR), GPU hosts only.

The second engine route: it compiles the eval-mode PyTorch module directly (no ONNX in between).
Precision is explicit, as on the ONNX route: FP32, or the module cast to FP16 with
``use_explicit_typing=True`` (the strongly typed network of TensorRT 10+). INT8 on this route
needs a Q/DQ-annotated PyTorch module (NVIDIA ModelOpt), which this project keeps out; INT8 engines
come from the ONNX route (:mod:`export.tensorrt`).

Two products: a serialized TensorRT engine (bytes), and an in-process compiled module for the bench.

- The module is deep-copied before it is moved and cast: ``nn.Module.to(dtype=...)`` works in place,
  and the caller's module is the FP32 reference of every later gate.
- The plan's I/O is float32 whatever the precision (the cast to FP16 and back is inside the
  network), as the generated Triton configs declare. Its input is named ``image``: Torch-TensorRT
  names each engine input after the exported program's FX placeholder, i.e. the ``forward`` argument
  (pytorch/TensorRT v2.13.0 ``py/torch_tensorrt/dynamo/conversion/_TRTInterpreter.py``,
  ``placeholder()`` adds the network input with ``name=target``; ``torch_tensorrt.Input(name=...)`` does
  not set it), so the wrapper's argument is called ``image``. Its output tensor is named ``output0``:
  the same file's ``output()`` names outputs ``f"output{i}"`` (later versions, not released in 2.13,
  take ``output_binding_names``), so
  :func:`serialize_engine` returns the plan's real names and the export records them; the export's
  gate runs these plan bytes (``export.tensorrt.engine_runner``), not a second compile.

Not run on the development machines (torch-tensorrt needs the data-center TensorRT and a GPU).
"""

from __future__ import annotations

import copy
import importlib.util
import logging
from pathlib import Path

import numpy as np

from banet.inference import Runner
from banet.spec import NETWORK_INPUT, NETWORK_OUTPUT
from export.tensorrt import DEFAULT_WORKSPACE_GIB, profile_shapes

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16")


def available() -> bool:
    """True when ``torch_tensorrt`` is importable and a CUDA GPU is visible."""
    if importlib.util.find_spec("torch_tensorrt") is None:
        return False
    import torch

    return torch.cuda.is_available()


def unavailable_reason() -> str:
    if importlib.util.find_spec("torch_tensorrt") is None:
        return "the torch_tensorrt Python package is not installed"
    return "no CUDA GPU is visible"


TORCH_TENSORRT_OUTPUT = "output0"
"""The name Torch-TensorRT gives the network's (first) output tensor."""


def _float_io(model, dtype, device: str = "cuda"):
    """A deep copy of ``model`` on ``device`` in ``dtype`` inside, float32 in and out.

    The argument of ``forward`` is named after the spec's input (:data:`banet.spec.NETWORK_INPUT`):
    it becomes the exported program's placeholder, and Torch-TensorRT names the engine input after it.
    """
    import torch

    class FloatIO(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, image):  # the name is the engine input's name (see the module docstring)
            return self.inner(image.to(dtype)).float()

    return FloatIO(copy.deepcopy(model).eval().to(device, dtype=dtype)).eval()


def export_program(model, dtype, image_size: int, device: str = "cuda"):
    """``torch.export`` of the float-I/O wrapper of ``model`` with a dynamic batch axis (the profile's range).

    Its one user input placeholder is named :data:`banet.spec.NETWORK_INPUT` ``.name``; on the CPU this
    is what a test checks (Torch-TensorRT itself needs a GPU).
    """
    import torch

    wrapped = _float_io(model, dtype, device)
    shapes = profile_shapes(image_size)
    example = torch.zeros(shapes["opt"], dtype=torch.float32, device=device)
    batch = torch.export.Dim("batch", min=shapes["min"][0], max=shapes["max"][0])
    return torch.export.export(wrapped, (example,), dynamic_shapes=({0: batch},))


def _prepare(model, precision: str, image_size: int):
    import torch
    import torch_tensorrt

    if precision not in PRECISIONS:
        raise ValueError(f"Torch-TensorRT route supports {PRECISIONS}, got {precision!r} "
                         "(INT8 engines come from the ONNX Q/DQ route)")
    dtype = torch.float16 if precision == "fp16" else torch.float32
    shapes = profile_shapes(image_size)
    spec = torch_tensorrt.Input(min_shape=shapes["min"], opt_shape=shapes["opt"], max_shape=shapes["max"],
                                dtype=torch.float32, name=NETWORK_INPUT.name)
    exported = export_program(model, dtype, image_size, device="cuda")
    return exported, spec, dtype


def serialize_engine(model, engine_path: str | Path, *, precision: str, image_size: int,
                     workspace_gib: float = DEFAULT_WORKSPACE_GIB) -> dict:
    """Compile a copy of ``model`` into a raw serialized TensorRT engine file; ``model`` is not changed.

    Returns the plan's I/O: ``{"input": "image", "output": "output0", "dtype": "float32"}`` (float32
    I/O at every precision).
    """
    import torch_tensorrt

    exported, spec, _ = _prepare(model, precision, image_size)
    engine = torch_tensorrt.dynamo.convert_exported_program_to_serialized_trt_engine(
        exported, arg_inputs=[spec], use_explicit_typing=True,
        workspace_size=int(workspace_gib * (1 << 30)))
    path = Path(engine_path)
    path.write_bytes(engine)
    log.info("Torch-TensorRT wrote %s (%s)", path, precision)
    return {"input": NETWORK_INPUT.name, "output": TORCH_TENSORRT_OUTPUT, "dtype": "float32",
            "triton_config_output": NETWORK_OUTPUT.name}


def compiled_runner(model, *, precision: str, image_size: int,
                    workspace_gib: float = DEFAULT_WORKSPACE_GIB) -> Runner:
    """Compile a copy of ``model`` in process and wrap it as a float32-in/float32-out :data:`Runner` (bench)."""
    import torch
    import torch_tensorrt

    exported, spec, _ = _prepare(model, precision, image_size)
    compiled = torch_tensorrt.dynamo.compile(exported, arg_inputs=[spec], use_explicit_typing=True,
                                             workspace_size=int(workspace_gib * (1 << 30)))

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to("cuda")
            return compiled(x).float().cpu().numpy()

    return run
