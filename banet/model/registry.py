"""The one registry of segmentation networks: architecture name -> config, builder, presets.

BA-Net is the architecture ``"banet"`` (its :class:`~banet.model.ModelConfig`, ``PRESETS`` and
``ABLATIONS`` are unchanged); the six networks the seed paper compares with are ``"fcn"``,
``"unet"``, ``"multiresunet"``, ``"attention_unet"`` (AG-net), ``"deeplabv3"`` and ``"cenet"``.

The interface the rest of the code uses (and nothing else of this module):

- ``ARCHITECTURES: dict[str, Architecture]``: every name, in the seed paper's table order, BA-Net last.
  ``DEFAULT_ARCH = "banet"``.
- ``architecture(name) -> Architecture``: the entry, or ValueError naming the known ones.
  ``Architecture`` fields: ``name``, ``config_class`` (a frozen dataclass with ``to_dict()``),
  ``builder(config, *, imagenet_weights=None) -> nn.Module``, ``presets: dict[str, config]`` (every
  architecture has ``"tiny"``, for CPU tests, and ``"paper"``, the published scale), ``title`` and
  ``reference`` (the paper), ``components`` (``banet-info``'s FLOP groups: group -> top-level children).
- ``preset(arch, name) -> config``; ``config_from_dict(arch, d) -> config`` (JSON lists become tuples
  again; unknown keys are refused); ``config_to_dict(config) -> dict``.
- ``build(arch, preset_or_config="paper", *, imagenet_weights=None) -> nn.Module``: a preset name or a
  config of that architecture.
- ``arch_of(model) -> str``: the architecture of a built network (by its ``config``'s type).
- ``output_bias(model) -> nn.Parameter``: the one-element bias whose shift moves every output logit
  by the same amount (tests and the soak centre random-weight networks with it).
- ``has_field(arch, field)``: whether the architecture's config has a field (``backbone``,
  ``align_corners``, ...), for options that only some architectures take.

Every network maps ``(B, 3, H, W)`` float images to ``(B, 1, H, W)`` logits at the input size in
eval mode. In train mode BA-Net returns a :class:`~banet.model.BANetOutput` (deep supervision); the
others return the plain logits tensor, and the training loss takes either (:func:`banet.train.split_output`).
Every config has ``align_corners``, the corner convention of that network's bilinear resizes (for
U-Net and MultiResUNet, which have none, it is accepted and changes nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

from torch import nn

from banet.model.attention_unet import AttentionUNetConfig, build_attention_unet
from banet.model.banet import build_model
from banet.model.cenet import CENetConfig, build_cenet
from banet.model.config import PRESETS as BANET_PRESETS
from banet.model.config import ModelConfig
from banet.model.deeplabv3 import DeepLabV3Config, build_deeplabv3
from banet.model.fcn import FCNConfig, build_fcn
from banet.model.multiresunet import MultiResUNetConfig, build_multiresunet
from banet.model.unet import UNetConfig, build_unet

DEFAULT_ARCH = "banet"


@dataclass(frozen=True)
class Architecture:
    """One registered network: how to configure and build it."""

    name: str
    title: str
    reference: str
    config_class: type
    builder: Callable[..., nn.Module]
    presets: dict[str, Any]
    components: dict[str, tuple[str, ...]]
    output_bias: str = "head.bias"


ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in (
    Architecture(
        "fcn", "FCN-8s (ResNet backbone)", "Long, Shelhamer and Darrell, CVPR 2015",
        FCNConfig, build_fcn,
        {"paper": FCNConfig(backbone="resnet101"), "resnet50": FCNConfig(backbone="resnet50"),
         "tiny": FCNConfig(backbone="resnet18", width=16)},
        {"encoder": ("encoder",), "decoder": ("score32", "score16", "score8")}, "score8.bias"),
    Architecture(
        "unet", "U-Net", "Ronneberger, Fischer and Brox, MICCAI 2015",
        UNetConfig, build_unet,
        {"paper": UNetConfig(base_channels=64), "tiny": UNetConfig(base_channels=8)},
        {"encoder": ("inc", "down"), "decoder": ("up", "head")}),
    Architecture(
        "multiresunet", "MultiResUNet", "Ibtehaz and Rahman, Neural Networks 2020",
        MultiResUNetConfig, build_multiresunet,
        {"paper": MultiResUNetConfig(base_filters=32), "tiny": MultiResUNetConfig(base_filters=8)},
        {"encoder": ("encoder",), "context": ("res_paths",), "decoder": ("up", "decoder", "head")}, "head.1.bias"),
    Architecture(
        "attention_unet", "Attention U-Net (AG-net)", "Oktay et al., MIDL 2018",
        AttentionUNetConfig, build_attention_unet,
        {"paper": AttentionUNetConfig(base_channels=64), "tiny": AttentionUNetConfig(base_channels=8)},
        {"encoder": ("inc", "down"), "context": ("gating", "gates"), "decoder": ("merge", "head")}),
    Architecture(
        "deeplabv3", "DeepLabv3 (output stride 8)", "Chen et al., arXiv:1706.05587, 2017",
        DeepLabV3Config, build_deeplabv3,
        {"paper": DeepLabV3Config(backbone="resnet101"), "resnet50": DeepLabV3Config(backbone="resnet50"),
         "tiny": DeepLabV3Config(backbone="resnet18", width=16, aspp_channels=64)},
        {"encoder": ("encoder",), "context": ("aspp",), "decoder": ("head",)}),
    Architecture(
        "cenet", "CE-Net", "Gu et al., IEEE TMI 2019",
        CENetConfig, build_cenet,
        {"paper": CENetConfig(backbone="resnet34"), "tiny": CENetConfig(backbone="resnet18", width=16)},
        {"encoder": ("encoder",), "context": ("dac", "rmp"),
         "decoder": ("decoder4", "decoder3", "decoder2", "decoder1", "final", "head")}),
    Architecture(
        "banet", "BA-Net", "the seed paper",
        ModelConfig, build_model, dict(BANET_PRESETS),
        {"encoder": ("encoder",), "context": ("aspp",), "stages": ("squeeze", "pee", "mtl"),
         "decoder": ("decode4", "decode", "head")}),
)}
"""Every architecture by name, in the seed paper's Table I order with BA-Net last."""

COMPONENT_GROUPS = ("encoder", "context", "stages", "decoder")
"""``banet-info``'s FLOP groups, in order: context is ASPP, DAC + RMP, the attention gates or the Res paths."""


def architecture(name: str) -> Architecture:
    """The registered architecture ``name``; ValueError naming the known ones otherwise."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose from {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[name]


def preset(arch: str, name: str) -> Any:
    """The config of preset ``name`` of ``arch``; ValueError naming that architecture's presets."""
    presets = architecture(arch).presets
    if name not in presets:
        raise ValueError(f"{arch} has no preset {name!r}; choose from {sorted(presets)}")
    return presets[name]


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def config_from_dict(arch: str, data: dict[str, Any]) -> Any:
    """Rebuild ``arch``'s config from :func:`config_to_dict` output (e.g. after JSON)."""
    cls = architecture(arch).config_class
    if not isinstance(data, dict):
        raise ValueError(f"a {arch} config must be a dict, got {type(data).__name__}")
    if cls is ModelConfig:
        return ModelConfig.from_dict(data)
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown {arch} config keys: {sorted(unknown)}")
    return cls(**{k: _tuples(v) for k, v in data.items()})


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config as plain Python values (what checkpoints and results files store)."""
    return asdict(config)


def arch_of_config(config: Any) -> str:
    """The architecture whose config class ``config`` is an instance of."""
    for arch in ARCHITECTURES.values():
        if type(config) is arch.config_class:
            return arch.name
    raise TypeError(f"{type(config).__name__} is not the config of a registered architecture")


def arch_of(model: nn.Module) -> str:
    """The architecture of a network built by :func:`build` (DistributedDataParallel is unwrapped)."""
    net = getattr(model, "module", model)
    config = getattr(net, "config", None)
    if config is None:
        raise TypeError(f"{type(net).__name__} is not a registered network (it has no config)")
    return arch_of_config(config)


def has_field(arch: str, field: str) -> bool:
    """Whether ``arch``'s config has ``field`` (e.g. ``backbone``)."""
    return field in {f.name for f in fields(architecture(arch).config_class)}


def build(arch: str, preset_or_config: str | Any = "paper", *, imagenet_weights: str | None = None) -> nn.Module:
    """Build network ``arch`` from a preset name or a config of that architecture (train mode, as
    ``nn.Module`` s start). ``imagenet_weights`` (a torchvision ResNet state dict) is taken by the
    ResNet-encoder networks and refused by the others."""
    entry = architecture(arch)
    config = preset(arch, preset_or_config) if isinstance(preset_or_config, str) else preset_or_config
    if type(config) is not entry.config_class:
        raise TypeError(f"{arch} needs a {entry.config_class.__name__}, got {type(config).__name__}")
    return entry.builder(config, imagenet_weights=imagenet_weights)


def output_bias(model: nn.Module) -> nn.Parameter:
    """The ``(1,)`` bias added to every output logit alike (only bilinear resizes follow it)."""
    net = getattr(model, "module", model)
    bias = net.get_parameter(architecture(arch_of(net)).output_bias)
    if bias.numel() != 1:
        raise AssertionError(f"{arch_of(net)}'s output bias has {bias.numel()} elements")  # a registry mistake
    return bias
