"""banet_postprocess (Python backend, KIND_CPU): logits -> mask, boundary and area at the original size.

Inputs ``probability`` ``(B, 1, S, S)`` float16 (the hot path, ``network_io`` "uint8": the small map
is resized and thresholded by :func:`banet.processing.mask_from_probability`) or ``logits``
``(B, 1, S, S)`` float32 (``network_io`` "float32"), ``ORIGINAL_SIZE`` ``(B, 2)`` int32 and the optional
``THRESHOLD`` ``(B, 1)`` float32 (default :data:`banet.spec.MASK_THRESHOLD`). Outputs ``MASK`` and
``BOUNDARY`` ``(B, H, W)`` uint8 0/255 and ``AREA`` ``(B, 1)`` int64. A request with a threshold
outside [0, 1] (or whose items do not share one size, which a single output tensor needs) gets a
TritonError while the other requests of the batch succeed.
"""

import os
import sys

# The Python backend stub embeds an isolated interpreter that ignores PYTHONPATH; honour it here so
# that numpy, pillow and banet come from the environment banet-serve runs in.
for _entry in reversed(os.environ.get("PYTHONPATH", "").split(os.pathsep)):
    if _entry and _entry not in sys.path:
        sys.path.insert(0, _entry)

import json  # noqa: E402

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

from banet import processing, spec  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        self.model_name = args["model_name"]
        parameters = json.loads(args["model_config"]).get("parameters", {})
        network_io = parameters.get("network_io", {}).get("string_value", "float32")
        self.input_name = spec.network_tensors(network_io)[1].name
        self.to_mask = processing.mask_from_probability if network_io == "uint8" else processing.postprocess

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                masks, boundaries, areas = _postprocess_request(request, self.input_name, self.to_mask)
            except ValueError as err:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{self.model_name}: {err}")))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(spec.MASK.name, masks),
                pb_utils.Tensor(spec.BOUNDARY.name, boundaries),
                pb_utils.Tensor(spec.AREA.name, areas),
            ]))
        return responses


def _postprocess_request(request, input_name, to_mask):
    logits = pb_utils.get_input_tensor_by_name(request, input_name).as_numpy()
    sizes = pb_utils.get_input_tensor_by_name(request, spec.ORIGINAL_SIZE.name).as_numpy()
    given = pb_utils.get_input_tensor_by_name(request, spec.THRESHOLD.name)
    thresholds = (np.full(len(logits), spec.MASK_THRESHOLD, dtype=np.float32) if given is None
                  else given.as_numpy().reshape(len(logits), -1)[:, 0])
    if len({(int(h), int(w)) for h, w in sizes}) > 1:
        raise ValueError(f"the images of one request must share one size to form one MASK tensor, "
                         f"got {sorted({(int(h), int(w)) for h, w in sizes})}; send them as separate requests")
    masks = []
    for index, (logit, size, threshold) in enumerate(zip(logits, sizes, thresholds)):
        if not np.isfinite(threshold) or not 0.0 <= threshold <= 1.0:
            raise ValueError(f"{spec.THRESHOLD.name}[{index}] must be within [0, 1], got {float(threshold)}")
        masks.append(to_mask(logit, (int(size[0]), int(size[1])), float(threshold)))
    boundaries = [processing.boundary(mask) for mask in masks]
    areas = [[processing.mask_area(mask)] for mask in masks]
    return np.stack(masks), np.stack(boundaries), np.asarray(areas, dtype=np.int64)
