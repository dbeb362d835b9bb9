"""A DALI pre-processing model for GPU servers: the ensemble's first step on the GPU.

NVIDIA DALI decodes the JPEGs with nvJPEG (``device="mixed"``: entropy decoding on the CPU, the rest
on the GPU), resizes them on the GPU (bilinear with anti-aliasing, as :func:`banet.processing.resize_image`)
and hands the uint8 network input :data:`banet.spec.SERVING_INPUT` ``(B, S, S, 3)`` and
:data:`banet.spec.ORIGINAL_SIZE` to the serving graph, which normalizes. It replaces ``banet_preprocess``
when the repository is written with ``preprocess="dali"``.

What runs where (see docs/serving.md):

- :func:`build_pipeline` with ``device="cpu"`` runs on any machine with ``nvidia-dali-cuda130``
  (``pip install '.[dali]'``): the tests compare its output with the Python path on real images.
- ``device="gpu"`` (the served one) can be built and serialized without a GPU (``device_id=None``),
  but only run on a GPU; Triton's ``dali`` backend (``libtriton_dali.so``) ships only in NVIDIA's Triton
  container, so the embedded server of ``nvidia-pytriton`` cannot serve it: not run here.
- Unlike ``banet_preprocess``, a DALI pipeline fails a whole batch on one undecodable image (the
  dynamic batcher's other requests of that batch get the error too), and its ensemble takes the file
  as a ``UINT8 [-1]`` vector (``allow_ragged_batch``) instead of ``BYTES``. Use it for trusted, high-rate
  sources; keep the Python step where arbitrary uploads arrive.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from banet import spec

PIPELINE_FILE = "model.dali"


class DaliUnavailable(RuntimeError):
    """``nvidia.dali`` is not importable; the message says what to install."""


def available() -> bool:
    """True when ``nvidia.dali`` is importable (``pip install '.[dali]'``, about 720 MB)."""
    try:
        return importlib.util.find_spec("nvidia.dali") is not None
    except ModuleNotFoundError:
        return False


def build_pipeline(image_size: int, *, device: str = "gpu", batch_size: int = spec.MAX_BATCH_SIZE,
                   num_threads: int = 2):
    """The pre-processing pipeline: ``IMAGE_BYTES`` (encoded file, uint8 vector) -> ``image_u8``
    ``(S, S, 3)`` uint8 and ``ORIGINAL_SIZE`` ``(2,)`` int32 per sample.

    ``device="gpu"``: nvJPEG ("mixed") decode and GPU resize, for Triton; ``device="cpu"``: the same
    graph on the CPU (what can run without a GPU). Built with ``device_id=None`` either way, so it can
    be serialized on a machine without a GPU (Triton picks the device when it loads the model).
    """
    if not available():
        raise DaliUnavailable("nvidia.dali is not installed: pip install '.[dali]' (nvidia-dali-cuda130)")
    from nvidia.dali import fn, pipeline_def, types

    if device not in ("gpu", "cpu"):
        raise ValueError(f"device must be gpu or cpu, got {device!r}")

    @pipeline_def(batch_size=batch_size, num_threads=num_threads, device_id=None, prefetch_queue_depth=1)
    def preprocess():
        encoded = fn.external_source(name=spec.ENCODED_IMAGE.name, dtype=types.UINT8)
        images = fn.decoders.image(encoded, device="mixed" if device == "gpu" else "cpu", output_type=types.RGB)
        # (H, W) of the decoded image (EXIF orientation applied by the decoder), for the mask
        original = fn.slice(images.shape(dtype=types.INT32), 0, 2, axes=[0])
        resized = fn.resize(images, resize_x=image_size, resize_y=image_size, interp_type=types.INTERP_LINEAR,
                            antialias=True, dtype=types.UINT8)
        return resized, original

    return preprocess()


def write_pipeline(path: str | Path, image_size: int, *, device: str = "gpu") -> Path:
    """Serialize :func:`build_pipeline` to ``path`` (``model.dali``, what Triton's DALI backend loads)."""
    path = Path(path)
    pipe = build_pipeline(image_size, device=device)
    pipe.serialize(filename=str(path))
    return path


def preprocess_config(image_size: int, *, max_batch_size: int = spec.MAX_BATCH_SIZE, instances: int = 1,
                      queue_delay_us: int = 500) -> str:
    """``config.pbtxt`` of the DALI ``banet_preprocess`` (the names and dtypes of :mod:`banet.spec`)."""
    out = spec.sized(spec.SERVING_INPUT, image_size)
    dims = ", ".join(str(d) for d in out.shape)
    return (f'name: "{spec.PREPROCESS_MODEL}"\nbackend: "dali"\nmax_batch_size: {max_batch_size}\n'
            f'input [\n  {{\n    name: "{spec.ENCODED_IMAGE.name}"\n    data_type: TYPE_UINT8\n    dims: [ -1 ]\n'
            f'    allow_ragged_batch: true\n  }}\n]\n'
            f'output [\n  {{\n    name: "{out.name}"\n    data_type: {out.triton_dtype}\n    dims: [ {dims} ]\n  }},\n'
            f'  {{\n    name: "{spec.ORIGINAL_SIZE.name}"\n    data_type: {spec.ORIGINAL_SIZE.triton_dtype}\n'
            f'    dims: [ {spec.ORIGINAL_SIZE.shape[0]} ]\n  }}\n]\n'
            f'dynamic_batching {{\n  max_queue_delay_microseconds: {queue_delay_us}\n}}\n'
            f'instance_group [\n  {{\n    kind: KIND_GPU\n    count: {instances}\n  }}\n]\n')


def run_cpu(encoded: list[bytes], image_size: int):
    """Run the CPU variant on ``encoded`` files: (list of ``(S, S, 3)`` uint8, list of ``(H, W)``)."""
    import numpy as np

    pipe = build_pipeline(image_size, device="cpu", batch_size=len(encoded))
    pipe.build()
    pipe.feed_input(spec.ENCODED_IMAGE.name, [np.frombuffer(data, dtype=np.uint8) for data in encoded])
    images, sizes = pipe.run()
    return ([np.array(images.at(i)) for i in range(len(encoded))],
            [tuple(int(v) for v in np.array(sizes.at(i))) for i in range(len(encoded))])
