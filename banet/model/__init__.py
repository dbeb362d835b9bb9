"""Segmentation networks: BA-Net (blocks ``blocks.py``, encoder ``encoder.py``, wiring ``banet.py``)
and the six networks the seed paper compares with (one file each), behind one registry
(``registry.py``: architecture name -> config, builder, presets)."""

from banet.model.banet import BANet, BANetOutput, build_model
from banet.model.config import ABLATIONS, BACKBONES, PRESETS, ModelConfig
from banet.model.registry import ARCHITECTURES, DEFAULT_ARCH, arch_of, build, config_from_dict

__all__ = ["ABLATIONS", "ARCHITECTURES", "BACKBONES", "BANet", "BANetOutput", "DEFAULT_ARCH", "ModelConfig",
           "PRESETS", "arch_of", "build", "build_model", "config_from_dict"]
