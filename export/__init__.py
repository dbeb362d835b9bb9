"""Checkpoint -> deployable artifacts: ONNX, FP16/INT8 ONNX, TensorRT engines, Triton repository.

Modules by job: :mod:`export.onnx` (export, simplify, check), :mod:`export.precision` (FP16 and
INT8 Q/DQ graphs), :mod:`export.onnxruntime` (the ONNX Runtime runner), :mod:`export.parity` (the
accuracy gate), :mod:`export.tensorrt` (engines: TensorRT, or TensorRT-RTX ahead of time without a
GPU) and :mod:`export.torch_tensorrt` (GPU hosts only),
:mod:`export.pipeline` (the whole export as one function), :mod:`export.cli` (``banet-export``).
Heavy dependencies (onnx, onnxsim, onnxruntime, tensorrt) are imported inside the functions that
use them, so ``import export`` stays light.
"""
