"""BA-Net: boundary-aware context network for 2D medical image segmentation.

``import banet`` stays light (torch, numpy and pillow only, imported lazily where possible):
heavy or optional dependencies (onnx, onnxruntime, tensorrt, tritonclient) are imported inside
the functions that use them.
"""

__version__ = "0.1.0"
