"""banet_preprocess (Python backend, KIND_CPU): encoded image bytes -> network input + original size.

Inputs ``IMAGE_BYTES`` ``(B, 1)`` bytes; outputs ``image`` ``(B, 3, S, S)`` float32 (the training
normalization) and ``ORIGINAL_SIZE`` ``(B, 2)`` int32 ``(height, width)``. One response per
request; a request whose image is empty, too large, corrupt or of an unknown format gets a
TritonError naming the reason while the other requests of the batch succeed. Request bytes are
only handed to the image decoder (never unpickled or evaluated); the byte count is checked before
decoding and the pixel count from the header before any pixel is decoded.
"""

import json
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
        parameters = json.loads(args["model_config"]).get("parameters", {})
        self.image_size = int(parameters.get("image_size", {}).get("string_value", spec.IMAGE_SIZE))

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                batch, sizes = _preprocess_request(request, self.image_size)
            except (processing.ImageDecodeError, ValueError, TypeError) as err:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{self.model_name}: {err}")))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(spec.NETWORK_INPUT.name, batch),
                pb_utils.Tensor(spec.ORIGINAL_SIZE.name, sizes),
            ]))
        return responses


def _preprocess_request(request, image_size):
    """``(B, 1)`` encoded images -> ``(B, 3, S, S)`` float32 and ``(B, 2)`` int32."""
    items = pb_utils.get_input_tensor_by_name(request, spec.ENCODED_IMAGE.name).as_numpy()
    inputs, sizes = [], []
    for index, item in enumerate(items.reshape(-1)):
        name = f"{spec.ENCODED_IMAGE.name}[{index}]"
        if not isinstance(item, bytes):
            raise TypeError(f"{name}: expected bytes, got {type(item).__name__}")
        if len(item) > spec.MAX_REQUEST_BYTES:
            raise ValueError(f"{name}: {len(item)} bytes exceeds the limit of {spec.MAX_REQUEST_BYTES} bytes")
        image = processing.decode_image(item, max_pixels=spec.MAX_IMAGE_PIXELS, name=name)
        inputs.append(processing.preprocess(image, image_size))
        sizes.append(image.shape[:2])
    return np.stack(inputs).astype(np.float32), np.asarray(sizes, dtype=np.int32)
