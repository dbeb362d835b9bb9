"""banet_preprocess, DALI variant (Triton's ``dali`` backend, GPU servers): encoded file -> network input + size.

Input ``IMAGE_BYTES`` (the encoded file as a uint8 vector); outputs ``image_u8`` ``(S, S, 3)`` uint8 (nvJPEG
decode, ``device="mixed"``, then an antialiased bilinear resize on the GPU, as
``banet.processing.resize_image``) and ``ORIGINAL_SIZE`` ``(2,)`` int32 ``(height, width)`` per sample.

This file is what the repository ships (``banet_preprocess/1/dali.py``, no ``model.dali``): Triton's DALI
backend serializes it itself, with the container's own DALI, when the model loads (dali_backend
``src/dali_model.h`` ``LoadModel``: ``model.dali`` first, then ``dali.py`` of the version folder, run through
``nvidia.dali._utils.autoserialize.invoke_autoserialize`` by ``src/model_provider/model_provider.h``). So the
pipeline is always serialized by the DALI version that runs it, whatever DALI wrote the repository.

It imports nothing but ``nvidia.dali`` (the backend runs it with the container's ``python3``).
``export.repository`` writes it with the repository's values in the block below; ``export.dali`` loads the
same file (as the backend does) to build the CPU variant for the parity tests.
"""

import inspect

from nvidia.dali import fn, pipeline_def, types
from nvidia.dali.plugin.triton import autoserialize

# --- the repository's values: export.dali.render_autoserialized rewrites these three lines ---
IMAGE_SIZE = 256
MAX_BATCH_SIZE = 32
ENCODED_NAME = "IMAGE_BYTES"
# ---

TRITON_EXECUTOR = {"exec_async": True, "exec_pipelined": True, "exec_dynamic": False, "prefetch_queue_depth": 1}
"""The executor Triton creates every DALI pipeline with, declared here so that DALI refuses at definition what
Triton would refuse at load. dali_backend ``src/dali_executor/dali_pipeline.h`` ``CreatePipeline``:
``daliCreatePipeline(..., 0, 1, 0, 0, 0)`` (not separated, prefetch queue depth 1); DALI ``dali/c_api/c_api.cc``
maps ``daliCreatePipeline`` to ``daliCreatePipeline2(..., pipelined=1, async=1, ...)``, i.e. the flags
``DALI_EXEC_IS_ASYNC | DALI_EXEC_IS_PIPELINED`` without ``DALI_EXEC_IS_DYNAMIC``."""


def _exif_aware_ops():
    """(image decoder, shape peeker) that apply the EXIF orientation, as ``banet.processing.decode_image`` does.

    DALI 2.2 moved the nvImageCodec decoders out of ``fn.experimental``; before it (e.g. 2.1.1, what the DALI
    backend pins on its r26.06 branch) ``fn.decoders.image`` and ``fn.peek_image_shape`` have no
    ``adjust_orientation`` and ignore EXIF, while their ``fn.experimental`` twins apply it (seen with 2.1.1 and
    2.4.0 on the CPU). Pick by the argument, not by a version number.
    """
    if "adjust_orientation" in inspect.signature(fn.peek_image_shape).parameters:
        return fn.decoders.image, fn.peek_image_shape
    return fn.experimental.decoders.image, fn.experimental.peek_image_shape


def preprocess_graph(encoded, image_size: int, device: str):
    """The graph: ``encoded`` (DataNode of encoded files) -> (resized ``(S, S, 3)`` uint8, ``(H, W)`` int32).

    ``device="gpu"``: nvJPEG (``mixed``) decode and GPU resize, the served variant; ``"cpu"``: the same graph on
    the CPU (what runs without a GPU, for the parity tests).
    """
    decode, peek_image_shape = _exif_aware_ops()
    images = decode(encoded, device="mixed" if device == "gpu" else "cpu", output_type=types.RGB)
    # (H, W) read from the encoded stream's header on the CPU. images.shape() of the mixed decoder's output
    # would move GPU data to the CPU, which only DALI's dynamic executor allows, and Triton's backend does not
    # use it (TRITON_EXECUTOR): DALI then refuses the pipeline ("This pipeline doesn't support transition from
    # GPU to CPU"). adjust_orientation: the EXIF orientation, as the decoder applies it (_exif_aware_ops).
    shape = peek_image_shape(encoded, dtype=types.INT32, adjust_orientation=True)
    original = fn.slice(shape, 0, 2, axes=[0])
    resized = fn.resize(images, resize_x=image_size, resize_y=image_size, interp_type=types.INTERP_LINEAR,
                        antialias=True, dtype=types.UINT8)
    return resized, original


@autoserialize
@pipeline_def(batch_size=MAX_BATCH_SIZE, num_threads=4, device_id=None, **TRITON_EXECUTOR)
def banet_preprocess():
    # device_id=None: serializable without a GPU; Triton passes the instance's device when it creates it
    encoded = fn.external_source(name=ENCODED_NAME, dtype=types.UINT8, ndim=1)
    return preprocess_graph(encoded, IMAGE_SIZE, "gpu")
