"""A DALI pre-processing model for GPU servers: the ensemble's first step on the GPU.

NVIDIA DALI decodes the JPEGs with nvJPEG (``device="mixed"``: entropy decoding on the CPU, the rest
on the GPU), resizes them on the GPU (bilinear with anti-aliasing, as :func:`banet.processing.resize_image`)
and hands the uint8 network input :data:`banet.spec.SERVING_INPUT` ``(B, S, S, 3)`` and
:data:`banet.spec.ORIGINAL_SIZE` to the serving graph, which normalizes. It replaces ``banet_preprocess``
when the repository is written with ``preprocess="dali"``.

The pipeline is defined once, in ``triton_repo/banet_preprocess/1/dali.py``: the repository ships that file
(:func:`write_autoserialized`) and Triton's DALI backend serializes it with the container's own DALI when
the model loads, so the DALI that wrote the repository (2.4 here) need not be the container's (the DALI
backend pins its own version in its ``DALI_VERSION`` file; 2.1.1 on its r26.06 branch). It declares the
executor Triton creates pipelines with (no dynamic executor), so a graph Triton would refuse is refused
here, at definition.

What runs where (see docs/serving.md):

- :func:`build_pipeline` with ``device="cpu"`` runs on any machine with ``nvidia-dali-cuda130``
  (``pip install '.[dali]'``): the tests compare its output with the Python path on real images.
- ``device="gpu"`` (the served one) can be defined and serialized without a GPU (``device_id=None``),
  but only run on a GPU; Triton's ``dali`` backend (``libtriton_dali.so``) ships only in NVIDIA's Triton
  container, so the embedded server of ``nvidia-pytriton`` cannot serve it: not run here.
- Unlike ``banet_preprocess``, a DALI pipeline fails a whole batch on one undecodable image (the
  dynamic batcher's other requests of that batch get the error too), and its ensemble takes the file
  as a ``UINT8 [-1]`` vector (``allow_ragged_batch``) instead of ``BYTES``. Use it for trusted, high-rate
  sources; keep the Python step where arbitrary uploads arrive.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from banet import spec

PIPELINE_FILE = "model.dali"
"""A pipeline serialized here (:func:`write_pipeline`); Triton loads it only if the container's DALI reads it."""
AUTOSERIALIZED_FILE = "dali.py"
"""What the repository ships: the backend's fallback file, serialized by the container's DALI at load."""
TESTED_DALI_VERSIONS = ("2.1.1", "2.4.0")
"""DALI versions under which the shipped ``dali.py`` was defined and autoserialized here: 2.4.0 in the tests,
2.1.1 (the DALI backend's pin on its r26.06 branch) by hand in a separate virtualenv (docs/serving.md)."""


class DaliUnavailable(RuntimeError):
    """``nvidia.dali`` is not importable; the message says what to install."""


class DaliPipelineError(RuntimeError):
    """The pipeline cannot be defined or serialized the way Triton's DALI backend would; DALI's reason attached."""


def available() -> bool:
    """True when ``nvidia.dali`` is importable (``pip install '.[dali]'``, about 720 MB)."""
    try:
        return importlib.util.find_spec("nvidia.dali") is not None
    except ModuleNotFoundError:
        return False


def template_path() -> Path:
    """``triton_repo/banet_preprocess/1/dali.py``: the one definition of the pipeline."""
    from triton_repo import TEMPLATE_DIR

    return TEMPLATE_DIR / spec.PREPROCESS_MODEL / "1" / AUTOSERIALIZED_FILE


def load_module(path: str | Path | None = None):
    """Import a ``dali.py`` (the template by default) from its file, as the backend does
    (dali_backend ``src/model_provider/model_provider.h``: ``importlib.util.spec_from_file_location``)."""
    if not available():
        raise DaliUnavailable("nvidia.dali is not installed: pip install '.[dali]' (nvidia-dali-cuda130)")
    path = Path(path) if path is not None else template_path()
    found = importlib.util.spec_from_file_location("banet_preprocess_dali", path)
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    return module


def build_pipeline(image_size: int, *, device: str = "gpu", batch_size: int = spec.MAX_BATCH_SIZE,
                   num_threads: int = 2):
    """The pre-processing pipeline: ``IMAGE_BYTES`` (encoded file, uint8 vector) -> ``image_u8``
    ``(S, S, 3)`` uint8 and ``ORIGINAL_SIZE`` ``(2,)`` int32 per sample.

    ``device="gpu"``: nvJPEG ("mixed") decode and GPU resize, for Triton; ``device="cpu"``: the same
    graph on the CPU (what can run without a GPU). Built with ``device_id=None`` and Triton's executor
    settings (the template's ``TRITON_EXECUTOR``) either way, so it can be defined and serialized on a
    machine without a GPU (Triton picks the device when it loads the model).
    """
    if device not in ("gpu", "cpu"):
        raise ValueError(f"device must be gpu or cpu, got {device!r}")
    template = load_module()
    from nvidia.dali import fn, pipeline_def, types

    @pipeline_def(batch_size=batch_size, num_threads=num_threads, device_id=None, **template.TRITON_EXECUTOR)
    def preprocess():
        encoded = fn.external_source(name=spec.ENCODED_IMAGE.name, dtype=types.UINT8, ndim=1)
        return template.preprocess_graph(encoded, image_size, device)

    return preprocess()


def render_autoserialized(image_size: int, *, max_batch_size: int = spec.MAX_BATCH_SIZE) -> str:
    """The template ``dali.py`` with this repository's image size, batch size and input name."""
    text = template_path().read_text()
    values = {"IMAGE_SIZE": str(int(image_size)), "MAX_BATCH_SIZE": str(int(max_batch_size)),
              "ENCODED_NAME": f'"{spec.ENCODED_IMAGE.name}"'}
    for name, value in values.items():
        text, count = re.subn(rf"^{name} = .*$", f"{name} = {value}", text, flags=re.MULTILINE)
        if count != 1:
            raise RuntimeError(f"{template_path()}: expected one line '{name} = ...', found {count}")
    return text


def check_autoserialized(text: str) -> bytes:
    """Autoserialize a rendered ``dali.py`` as Triton's backend does and return the serialized pipeline.

    The backend loads the file with ``importlib`` and calls
    ``nvidia.dali._utils.autoserialize.invoke_autoserialize(module, target)`` (dali_backend
    ``src/model_provider/model_provider.h``); here with this machine's DALI and ``device_id=None``, so a graph
    that the executor Triton uses would refuse fails now (:class:`DaliPipelineError`), not on the server.
    """
    import tempfile

    if not available():
        raise DaliUnavailable("nvidia.dali is not installed: pip install '.[dali]' (nvidia-dali-cuda130)")
    from nvidia.dali._utils.autoserialize import invoke_autoserialize

    with tempfile.TemporaryDirectory(prefix="banet-dali-") as tmp:
        source, target = Path(tmp) / AUTOSERIALIZED_FILE, Path(tmp) / PIPELINE_FILE
        source.write_text(text)
        try:
            invoke_autoserialize(load_module(source), str(target))
        except Exception as err:  # DALI raises RuntimeError/TypeError/ValueError from graph definition
            raise DaliPipelineError(f"the DALI pre-processing pipeline cannot be defined with Triton's executor "
                                    f"settings: {type(err).__name__}: {err}") from err
        return target.read_bytes()


def write_pipeline(path: str | Path, image_size: int, *, device: str = "gpu") -> Path:
    """Serialize :func:`build_pipeline` to ``path`` with the DALI installed here (``model.dali``). Triton loads
    such a file before ``dali.py``, so ship it only when this DALI is the serving container's."""
    path = Path(path)
    pipe = build_pipeline(image_size, device=device)
    pipe.serialize(filename=str(path))
    return path


def preprocess_config(image_size: int, *, max_batch_size: int = spec.MAX_BATCH_SIZE, instances: int = 1,
                      queue_delay_us: int = 0) -> str:
    """``config.pbtxt`` of the DALI ``banet_preprocess`` (the names and dtypes of :mod:`banet.spec`).

    No queue delay by default: only the network step waits for a batch to fill (``export.repository.dynamic_batching``).
    """
    from export.repository import dynamic_batching

    out = spec.sized(spec.SERVING_INPUT, image_size)
    dims = ", ".join(str(d) for d in out.shape)
    return (f'name: "{spec.PREPROCESS_MODEL}"\nbackend: "dali"\nmax_batch_size: {max_batch_size}\n'
            f'input [\n  {{\n    name: "{spec.ENCODED_IMAGE.name}"\n    data_type: TYPE_UINT8\n    dims: [ -1 ]\n'
            f'    allow_ragged_batch: true\n  }}\n]\n'
            f'output [\n  {{\n    name: "{out.name}"\n    data_type: {out.triton_dtype}\n    dims: [ {dims} ]\n  }},\n'
            f'  {{\n    name: "{spec.ORIGINAL_SIZE.name}"\n    data_type: {spec.ORIGINAL_SIZE.triton_dtype}\n'
            f'    dims: [ {spec.ORIGINAL_SIZE.shape[0]} ]\n  }}\n]\n'
            + dynamic_batching(queue_delay_us)
            + f'instance_group [\n  {{\n    kind: KIND_GPU\n    count: {instances}\n  }}\n]\n')


def run_cpu(encoded: list[bytes], image_size: int):
    """Run the CPU variant on ``encoded`` files: (list of ``(S, S, 3)`` uint8, list of ``(H, W)``)."""
    import numpy as np

    pipe = build_pipeline(image_size, device="cpu", batch_size=len(encoded))
    pipe.build()
    pipe.feed_input(spec.ENCODED_IMAGE.name, [np.frombuffer(data, dtype=np.uint8) for data in encoded])
    images, sizes = pipe.run()
    return ([np.array(images.at(i)) for i in range(len(encoded))],
            [tuple(int(v) for v in np.array(sizes.at(i))) for i in range(len(encoded))])
