"""The one definition of tensor names, dtypes, shapes and constants.

Training, export, the TensorRT profile, the Triton ``config.pbtxt`` writer, the Triton Python
models, the client and the bench all read these values; none of them spells a literal again.
This module imports nothing beyond the standard library so that the Triton server's Python
(which has no torch) can import it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

# --- pre-processing: what the network was trained on -------------------------------------------
IMAGE_SIZE = 256
"""Network input height and width in pixels (the paper resizes every image to 256x256)."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
"""ImageNet normalization (RGB, applied to pixel values scaled to [0, 1])."""

MASK_THRESHOLD = 0.5
"""Default probability threshold that turns the sigmoid of the logits into a mask."""

MASK_FOREGROUND_VALUE = 255
"""Value of foreground pixels in the uint8 masks written to disk and returned by Triton."""

GROUND_TRUTH_THRESHOLD = 127
"""Ground-truth mask files are JPEG (near-binary): foreground is ``value > 127``."""

MAX_IMAGE_PIXELS = 64_000_000
"""Images with more pixels are rejected from their header, before decoding (decompression bombs)."""

MAX_REQUEST_BYTES = 64 * 1024 * 1024
"""Largest encoded image accepted by the client and the Triton pre-processing model."""

DICOM_SUFFIXES = (".dcm", ".dicom")
"""File suffixes (any case) of DICOM inputs and data-set files; suffix-less files are found by their ``DICM`` marker."""

MAX_DICOM_BYTES = 16 * MAX_REQUEST_BYTES
"""Largest DICOM file accepted (1 GiB), three times over, each before the step it guards (banet/dicom.py): the file on
disk (before ``dcmread``), a deflated data set inflated (counted while inflating, before pydicom inflates it
unbounded), and the decoded pixels from the header (frames x rows x columns x (samples x bytes per sample + 3): the
decoded frames and their RGB uint8 display frames, both held until the file is served), before any pixel is decoded.
:data:`MAX_IMAGE_PIXELS` still bounds each frame, and with it the one frame's float temporaries of the display
transform. 1 GiB holds a 500-slice 512x512 16-bit CT (655 MB) or 86 frames of 1080p RGB."""


# --- the exported network ------------------------------------------------------------------------
@dataclass(frozen=True)
class TensorSpec:
    """A named tensor: ``shape`` excludes the batch axis; -1 marks a variable axis."""

    name: str
    dtype: str  # numpy dtype name
    shape: tuple[int, ...]

    @property
    def triton_dtype(self) -> str:
        return triton_dtype(self.dtype)


_TRITON_DTYPES = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "bfloat16": "TYPE_BF16",
    "uint8": "TYPE_UINT8",
    "int8": "TYPE_INT8",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "bool": "TYPE_BOOL",
    "object": "TYPE_STRING",
}


def triton_dtype(dtype: str) -> str:
    """Triton's ``data_type`` (``model_config.proto``) of a dtype name (numpy's / torch's spelling)."""
    if dtype not in _TRITON_DTYPES:
        raise ValueError(f"no Triton data type for dtype {dtype!r} (known: {', '.join(_TRITON_DTYPES)})")
    return _TRITON_DTYPES[dtype]


TENSORRT_DTYPES = {
    "FLOAT": "float32",
    "HALF": "float16",
    "BF16": "bfloat16",
    "UINT8": "uint8",
    "INT8": "int8",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
}
"""TensorRT ``DataType`` name -> dtype name (an attribute of ``torch`` and, but for ``bfloat16``, a numpy
dtype), for every type an engine's I/O tensor can have here; each also has a Triton type
(:func:`triton_dtype`). The other TensorRT types (``FP8``, ``FP4``, ``INT4``, ``E8M0``) are internal
precisions of Q/DQ networks, never the I/O of an engine this project builds: they have no Triton type."""

NETWORK_INPUT = TensorSpec("image", "float32", (3, IMAGE_SIZE, IMAGE_SIZE))
"""Normalized RGB image batch ``(B, 3, H, W)``."""

NETWORK_OUTPUT = TensorSpec("logits", "float32", (1, IMAGE_SIZE, IMAGE_SIZE))
"""Segmentation logits ``(B, 1, H, W)`` (apply a sigmoid for probabilities)."""

SERVING_INPUT = TensorSpec("image_u8", "uint8", (IMAGE_SIZE, IMAGE_SIZE, 3))
"""The served network variant's input: RGB uint8 pixels at the network size, ``(B, S, S, 3)`` (NHWC).

NHWC because that is how every decoder (Pillow, libjpeg-turbo, DALI) lays out pixels: the CPU
pre-processing sends its resized image as it is, and the HWC->CHW transpose runs inside the graph, on
the GPU, where TensorRT fuses it with the normalization (``x * 1/(255 std) - mean/std``)."""

SERVING_OUTPUT = TensorSpec("probability", "float16", (1, IMAGE_SIZE, IMAGE_SIZE))
"""The served network variant's output: ``sigmoid(logits)`` as float16, ``(B, 1, S, S)``.

The probability (not the mask) so that a per-request threshold and the bilinear upsampling to the
original size still work; float16 because it is half the bytes of float32 and keeps the masks, where
uint8 levels (a quarter) did not: against today's float32 path on the Kvasir-SEG test split, uint8
probabilities agreed at mean Jaccard 0.998 (worst 0.988), float16 at 0.9998 (worst 0.9986) with the
trained tiny model (references/serving/hotpath.py measures both, side by side)."""

PROBABILITY_SCALE = 255
"""uint8 probability levels ``v`` stand for ``v / PROBABILITY_SCALE`` (the bench's uint8 candidate)."""

NETWORK_IO = ("uint8", "float32")
"""Network I/O of a served repository, named by what the pre-processing sends: ``uint8``
(:data:`SERVING_INPUT` uint8 pixels -> :data:`SERVING_OUTPUT` float16 probability, the default hot
path) or ``float32`` (:data:`NETWORK_INPUT` -> :data:`NETWORK_OUTPUT` logits, the reference route)."""


def network_tensors(io: str) -> tuple[TensorSpec, TensorSpec]:
    """(input, output) tensor specs of the network for a :data:`NETWORK_IO` value."""
    if io not in NETWORK_IO:
        raise ValueError(f"network io must be one of {NETWORK_IO}, got {io!r}")
    return (SERVING_INPUT, SERVING_OUTPUT) if io == "uint8" else (NETWORK_INPUT, NETWORK_OUTPUT)


def sized(tensor: TensorSpec, image_size: int) -> TensorSpec:
    """``tensor`` (a network input/output spec) with its two spatial axes set to ``image_size``.

    The spatial axes are the ones spelled :data:`IMAGE_SIZE` in the spec (channels are 1 or 3)."""
    return TensorSpec(tensor.name, tensor.dtype, tuple(image_size if d == IMAGE_SIZE else d for d in tensor.shape))


ONNX_OPSET = 17
BATCH_AXIS_NAME = "batch"

MAX_BATCH_SIZE = 32
"""Largest batch: Triton's ``max_batch_size`` and the TensorRT optimization profile's max."""
OPT_BATCH_SIZE = 8
"""Batch size the TensorRT profile is tuned for."""

# --- Triton model repository ----------------------------------------------------------------------
IMAGE_SIZE_PARAMETER = "image_size"
"""Config parameter of the pre-processing steps: the side the image is resized to (the network's input size)."""
DECODE_OVERSAMPLE_PARAMETER = "decode_oversample"
"""``banet_preprocess`` config parameter: :data:`banet.processing.REDUCED_DECODE_OVERSAMPLE` for this repository."""
NETWORK_IO_PARAMETER = "network_io"
"""Config parameter of the pre/post-processing steps: the network's I/O (:data:`NETWORK_IO`)."""


def step_parameters(model_config: str) -> dict[str, str]:
    """A Python-backend step's config.pbtxt ``parameters`` (``args["model_config"]``, JSON) as name -> string
    value; :data:`NETWORK_IO_PARAMETER` is ``float32`` in configs written before it existed."""
    parameters = {name: value.get("string_value", "")
                  for name, value in json.loads(model_config).get("parameters", {}).items()}
    parameters.setdefault(NETWORK_IO_PARAMETER, "float32")
    return parameters


ENSEMBLE_MODEL = "banet"
RAW_ENSEMBLE_MODEL = "banet_raw"
"""The ensemble that takes decoded pixels (:data:`IMAGE_PIXELS`) instead of an encoded file."""
PREPROCESS_MODEL = "banet_preprocess"
NETWORK_MODEL = "banet_model"
POSTPROCESS_MODEL = "banet_postprocess"
PIXELS_MODEL = "banet_pixels"
"""``banet_raw``'s first step: decoded pixels -> the network input (resize only)."""

ENCODED_IMAGE = TensorSpec("IMAGE_BYTES", "object", (1,))
"""Encoded image file (PNG or JPEG bytes), one per request item."""
ORIGINAL_SIZE = TensorSpec("ORIGINAL_SIZE", "int32", (2,))
"""``(height, width)`` of the decoded image, used to resize the mask back."""
THRESHOLD = TensorSpec("THRESHOLD", "float32", (1,))
"""Optional per-request probability threshold in [0, 1]; defaults to :data:`MASK_THRESHOLD`."""
MASK = TensorSpec("MASK", "uint8", (-1, -1))
"""Binary mask at the original image size, 0 or :data:`MASK_FOREGROUND_VALUE`."""
BOUNDARY = TensorSpec("BOUNDARY", "uint8", (-1, -1))
"""One-pixel contour of the mask at the original size, 0 or :data:`MASK_FOREGROUND_VALUE`."""
AREA = TensorSpec("AREA", "int64", (1,))
"""Foreground area of the mask in pixels."""
MASK_ENCODED = TensorSpec("MASK_ENCODED", "object", (1,))
"""The mask of :data:`MASK`, compressed by :mod:`banet.mask_codec` (run lengths + zlib): about 1 kB for a
1920x1080 frame where ``MASK`` + ``BOUNDARY`` are 4 MB (references/serving/mask_encoding.py)."""
IMAGE_PIXELS = TensorSpec("IMAGE_PIXELS", "uint8", (-1, -1, 3))
"""Decoded RGB pixels ``(H, W, 3)`` uint8, the input of :data:`RAW_ENSEMBLE_MODEL` (no decoding on the server)."""

OUTPUTS_PARAMETER = "banet_outputs"
"""Request parameter (a string): the post-processing outputs to compute, comma-separated names of
:data:`SERVED_OUTPUTS`. Absent: :data:`COMPACT_OUTPUTS`. A Triton ensemble asks each step for every output in
its ``output_map`` whatever the client requested (core ``src/ensemble_scheduler/ensemble_scheduler.cc``:
``irequest->AddOriginalRequestedOutput`` for each mapped output), but forwards the request's parameters to every
step (``irequest->SetParameters``): the parameter is how a client says which outputs it wants computed."""
SERVED_OUTPUTS = (MASK_ENCODED.name, AREA.name, MASK.name, BOUNDARY.name)
"""Every output of the post-processing step and the ensembles, in their config order."""
COMPACT_OUTPUTS = (MASK_ENCODED.name, AREA.name)
"""What is computed and sent when a request does not name its outputs (the default of the client)."""
FULL_OUTPUTS = (MASK.name, BOUNDARY.name, AREA.name)
"""The uncompressed tensors (``TritonSegmenter(outputs="full")``, ``banet-client --outputs full``)."""


def parse_outputs(value: str | None) -> tuple[str, ...]:
    """The outputs named by an :data:`OUTPUTS_PARAMETER` value (comma-separated, any case), in :data:`SERVED_OUTPUTS`
    order; None -> :data:`COMPACT_OUTPUTS`. Raises ValueError naming an unknown or missing name."""
    if value is None:
        return COMPACT_OUTPUTS
    if not isinstance(value, str):
        raise ValueError(f"request parameter {OUTPUTS_PARAMETER} must be a string, got {type(value).__name__}")
    names = {n.strip().upper() for n in value.split(",") if n.strip()}  # perf_analyzer lower-cases values
    unknown = sorted(names - set(SERVED_OUTPUTS))
    if unknown or not names:
        raise ValueError(f"request parameter {OUTPUTS_PARAMETER}={value!r}: "
                         + (f"unknown output(s) {unknown}" if unknown else "names no output")
                         + f"; choose from {', '.join(SERVED_OUTPUTS)}")
    return tuple(n for n in SERVED_OUTPUTS if n in names)

GRPC_PORT = 8001
HTTP_PORT = 8000
METRICS_PORT = 8002
DEFAULT_HOST = "127.0.0.1"
