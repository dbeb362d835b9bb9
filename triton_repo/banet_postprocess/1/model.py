"""banet_postprocess (Python backend, KIND_CPU): probability -> the compact mask, area, and on request the tensors.

Inputs ``probability`` ``(B, 1, S, S)`` float16 (the hot path, ``network_io`` "uint8": the small map
is resized and thresholded by :func:`banet.processing.mask_from_probability`) or ``logits``
``(B, 1, S, S)`` float32 (``network_io`` "float32"), ``ORIGINAL_SIZE`` ``(B, 2)`` int32 and the optional
``THRESHOLD`` ``(B, 1)`` float32 (default :data:`banet.spec.MASK_THRESHOLD`). Outputs, each computed only
when wanted: ``MASK_ENCODED`` ``(B, 1)`` bytes (:mod:`banet.mask_codec`), ``AREA`` ``(B, 1)`` int64, ``MASK``
and ``BOUNDARY`` ``(B, H, W)`` uint8 0/255. Wanted = the names in the request parameter
:data:`banet.spec.OUTPUTS_PARAMETER` (absent: ``MASK_ENCODED`` and ``AREA``) that were also requested
(``request.requested_output_names()``; inside an ensemble that is every output of the step, see
:data:`banet.spec.OUTPUTS_PARAMETER`). A request with a threshold outside [0, 1], an unknown output name (or
whose items do not share one size, which a single MASK tensor needs) gets a TritonError while the other
requests of the batch succeed.
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

from banet import mask_codec, processing, spec  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        self.model_name = args["model_name"]
        network_io = spec.step_parameters(args["model_config"])[spec.NETWORK_IO_PARAMETER]
        self.input_name = spec.network_tensors(network_io)[1].name
        self.to_mask = processing.mask_from_probability if network_io == "uint8" else processing.postprocess

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                outputs = _postprocess_request(request, self.input_name, self.to_mask)
            except ValueError as err:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{self.model_name}: {err}")))
                continue
            responses.append(pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor(name, value) for name, value in outputs.items()]))
        return responses


def _wanted(request):
    """The outputs to compute: named by the request parameter (default: the compact ones) and requested."""
    parameters = json.loads(request.parameters() or "{}")
    named = spec.parse_outputs(parameters.get(spec.OUTPUTS_PARAMETER))
    requested = set(request.requested_output_names())
    return [name for name in named if name in requested]


def _postprocess_request(request, input_name, to_mask):
    wanted = _wanted(request)
    logits = pb_utils.get_input_tensor_by_name(request, input_name).as_numpy()
    sizes = pb_utils.get_input_tensor_by_name(request, spec.ORIGINAL_SIZE.name).as_numpy()
    given = pb_utils.get_input_tensor_by_name(request, spec.THRESHOLD.name)
    thresholds = (np.full(len(logits), spec.MASK_THRESHOLD, dtype=np.float32) if given is None
                  else given.as_numpy().reshape(len(logits), -1)[:, 0])
    if spec.MASK.name in wanted or spec.BOUNDARY.name in wanted:
        if len({(int(h), int(w)) for h, w in sizes}) > 1:
            raise ValueError(f"the images of one request must share one size to form one MASK tensor, "
                             f"got {sorted({(int(h), int(w)) for h, w in sizes})}; send them as separate requests")
    masks = []
    for index, (logit, size, threshold) in enumerate(zip(logits, sizes, thresholds)):
        if not np.isfinite(threshold) or not 0.0 <= threshold <= 1.0:
            raise ValueError(f"{spec.THRESHOLD.name}[{index}] must be within [0, 1], got {float(threshold)}")
        masks.append(to_mask(logit, (int(size[0]), int(size[1])), float(threshold)))
    make = {
        spec.MASK_ENCODED.name: lambda: np.asarray([[mask_codec.encode_mask(m)] for m in masks], dtype=object),
        spec.AREA.name: lambda: np.asarray([[processing.mask_area(m)] for m in masks], dtype=np.int64),
        spec.MASK.name: lambda: np.stack(masks),
        spec.BOUNDARY.name: lambda: np.stack([processing.boundary(m) for m in masks]),
    }
    return {name: make[name]() for name in wanted}
