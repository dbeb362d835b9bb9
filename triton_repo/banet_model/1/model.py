"""banet_model, "python_onnxruntime" variant: the network in ONNX Runtime inside the Python backend.

For servers that have only the Python backend (e.g. the tritonserver in nvidia-pytriton); on
NVIDIA's Triton container the same repository uses ``tensorrt_plan`` or ``onnxruntime_onnx``
instead. Triton checks the dtype and shape of the input (``image_u8`` ``(B, S, S, 3)`` uint8 for the
serving graph, ``image`` ``(B, 3, S, S)`` float32 for the float one: the names come from the ONNX
file) against the config before a request gets here. All requests handed over by the dynamic batcher
run as one ONNX Runtime batch; the output (``probability`` float16 or ``logits`` float32, ``(B, 1, S, S)``) is split
back, one response per request.
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

from banet import spec  # noqa: E402

ONNX_FILE = "model.onnx"


class TritonPythonModel:
    def initialize(self, args):
        import onnxruntime as ort

        path = os.path.join(args["model_repository"], args["model_version"], ONNX_FILE)
        if not os.path.isfile(path):
            raise pb_utils.TritonModelException(f"{args['model_name']}: ONNX model not found at {path}")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        threads = int(os.environ.get("BANET_ORT_THREADS", "0"))
        if threads > 0:
            options.intra_op_num_threads = threads
        # ORT's idle intra-op threads spin by default; on a host where the pre/post-processing
        # models share the cores, that spinning slows them down. BANET_ORT_SPINNING=1 restores it.
        options.add_session_config_entry("session.intra_op.allow_spinning", os.environ.get("BANET_ORT_SPINNING", "0"))
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        names_in = [t.name for t in self.session.get_inputs()]
        names_out = [t.name for t in self.session.get_outputs()]
        for io in spec.NETWORK_IO:
            tensor_in, tensor_out = spec.network_tensors(io)
            if names_in == [tensor_in.name] and names_out == [tensor_out.name]:
                self.input, self.output = tensor_in, tensor_out
                break
        else:
            raise pb_utils.TritonModelException(f"{args['model_name']}: {path} has inputs {names_in} and outputs "
                                                f"{names_out}, not the ones of banet.spec")

    def execute(self, requests):
        inputs = [pb_utils.get_input_tensor_by_name(r, self.input.name).as_numpy() for r in requests]
        try:
            (logits,) = self.session.run([self.output.name],
                                         {self.input.name: np.ascontiguousarray(np.concatenate(inputs))})
        except Exception as err:  # noqa: BLE001 - ORT failures become per-request errors, never a dead model
            error = pb_utils.TritonError(f"banet_model: ONNX Runtime failed: {err}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        responses, start = [], 0
        for batch in inputs:
            out = np.ascontiguousarray(logits[start:start + len(batch)], dtype=self.output.dtype)
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.output.name, out)]))
            start += len(batch)
        return responses
