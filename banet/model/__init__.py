"""BA-Net model: blocks (``blocks.py``), encoder (``encoder.py``), wiring (``banet.py``)."""

from banet.model.banet import BANet, BANetOutput, build_model
from banet.model.config import ABLATIONS, BACKBONES, PRESETS, ModelConfig

__all__ = ["ABLATIONS", "BACKBONES", "BANet", "BANetOutput", "ModelConfig", "PRESETS", "build_model"]
