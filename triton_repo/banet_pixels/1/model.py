"""banet_pixels (Python backend, KIND_CPU): decoded pixels -> network input + original size, no decoding.

The first step of the ``banet_raw`` ensemble, for clients that hold decoded frames (video, DICOM, arrays):
input ``IMAGE_PIXELS`` ``(B, H, W, 3)`` uint8 RGB; outputs ``image_u8`` ``(B, S, S, 3)`` uint8 (``network_io``
"uint8": the one :func:`banet.processing.resize_image`) or ``image`` ``(B, 3, S, S)`` float32 (``network_io``
"float32": :func:`banet.processing.preprocess`), and ``ORIGINAL_SIZE`` ``(B, 2)`` int32 ``(H, W)``. The same
pixels sent as a PNG to ``banet`` give the same network input (a PNG is decoded in full), hence the same mask.
A request over :data:`banet.spec.MAX_IMAGE_PIXELS` pixels, or with no pixels, gets a TritonError while the other
requests of the batch succeed.
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
        parameters = spec.step_parameters(args["model_config"])
        self.image_size = int(parameters.get(spec.IMAGE_SIZE_PARAMETER, spec.IMAGE_SIZE))
        self.network_io = parameters[spec.NETWORK_IO_PARAMETER]
        self.output_name = spec.network_tensors(self.network_io)[0].name

    def execute(self, requests):
        responses = []
        for request in requests:
            pixels = pb_utils.get_input_tensor_by_name(request, spec.IMAGE_PIXELS.name).as_numpy()
            try:
                batch, sizes = processing.network_input_of_pixels(pixels, self.image_size, self.network_io)
            except ValueError as err:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{self.model_name}: {err}")))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(self.output_name, batch),
                pb_utils.Tensor(spec.ORIGINAL_SIZE.name, sizes),
            ]))
        return responses
