"""banet_preprocess (Python backend, KIND_CPU): encoded image bytes -> network input + original size.

Inputs ``IMAGE_BYTES`` ``(B, 1)`` bytes; outputs ``image_u8`` ``(B, S, S, 3)`` uint8 (the hot path,
``network_io`` "uint8": JPEGs decoded at a reduced size, resized in uint8; the network normalizes)
or ``image`` ``(B, 3, S, S)`` float32 (``network_io`` "float32": the training normalization), and
``ORIGINAL_SIZE`` ``(B, 2)`` int32 ``(height, width)``. One response per
request; a request whose image is empty, too large, corrupt or of an unknown format gets a
TritonError naming the reason while the other requests of the batch succeed. Request bytes are
only handed to the image decoder (never unpickled or evaluated); the byte count is checked before
decoding and the pixel count from the header before any pixel is decoded.
"""

import os
import sys

# The Python backend stub embeds an isolated interpreter that ignores PYTHONPATH; honour it here so
# that numpy, pillow and banet come from the environment banet-serve runs in.
for _entry in reversed(os.environ.get("PYTHONPATH", "").split(os.pathsep)):
    if _entry and _entry not in sys.path:
        sys.path.insert(0, _entry)

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

from banet import processing, spec  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        self.model_name = args["model_name"]
        # the network's input side, written into config.pbtxt by export.repository
        parameters = spec.step_parameters(args["model_config"])
        self.image_size = int(parameters.get(spec.IMAGE_SIZE_PARAMETER, spec.IMAGE_SIZE))
        self.network_io = parameters[spec.NETWORK_IO_PARAMETER]
        self.output_name = spec.network_tensors(self.network_io)[0].name
        self.oversample = float(parameters.get(spec.DECODE_OVERSAMPLE_PARAMETER, processing.REDUCED_DECODE_OVERSAMPLE))

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                batch, sizes = _preprocess_request(request, self.image_size, self.network_io, self.oversample)
            except (processing.ImageDecodeError, ValueError, TypeError) as err:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{self.model_name}: {err}")))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(self.output_name, batch),
                pb_utils.Tensor(spec.ORIGINAL_SIZE.name, sizes),
            ]))
        return responses


def _preprocess_request(request, image_size, network_io, oversample):
    """``(B, 1)`` encoded images -> ``(B, S, S, 3)`` uint8 (or ``(B, 3, S, S)`` float32) and ``(B, 2)`` int32."""
    items = pb_utils.get_input_tensor_by_name(request, spec.ENCODED_IMAGE.name).as_numpy()
    inputs, sizes = [], []
    for index, item in enumerate(items.reshape(-1)):
        name = f"{spec.ENCODED_IMAGE.name}[{index}]"
        if not isinstance(item, bytes):
            raise TypeError(f"{name}: expected bytes, got {type(item).__name__}")
        if len(item) > spec.MAX_REQUEST_BYTES:
            raise ValueError(f"{name}: {len(item)} bytes exceeds the limit of {spec.MAX_REQUEST_BYTES} bytes")
        if network_io == "uint8":
            image, size = processing.network_image(item, image_size, max_pixels=spec.MAX_IMAGE_PIXELS, name=name,
                                                   oversample=oversample)
        else:
            decoded = processing.decode_image(item, max_pixels=spec.MAX_IMAGE_PIXELS, name=name)
            image, size = processing.preprocess(decoded, image_size), decoded.shape[:2]
        inputs.append(image)
        sizes.append(size)
    return np.stack(inputs), np.asarray(sizes, dtype=np.int32)
