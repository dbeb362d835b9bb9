"""The model's constructor arguments, one frozen dataclass, saved inside every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a :class:`banet.model.BANet`.

    ``width`` scales every ResNet stage (64 is the standard ResNet and the only width that can
    load ImageNet weights); smaller widths, ``stage_channels`` and ``aspp_channels`` give tiny
    configurations for CPU tests and demos. ``pee``, ``mtl``, ``ia`` and ``cff`` are the switches of
    the paper's ablation study (Table IV); all False is the plain baseline. A switched-off part is
    not built (``print(model)`` shows the graph that runs); ``ia`` needs ``mtl`` (IA acts inside
    mini-MTL), so ``mtl=False, ia=True`` is refused rather than silently equal to ``no_mtl``.
    ``align_corners`` is the corner convention of every bilinear resize in the model (False:
    PyTorch's and ONNX's default half-pixel mapping; True: the authors' code), see
    docs/architecture.md.
    """

    backbone: str = "resnet101"
    width: int = 64
    stage_channels: int = 128
    aspp_channels: int = 256
    aspp_rates: tuple[int, ...] = (6, 12, 18)
    pee_pool_sizes: tuple[tuple[int, ...], ...] = ((5, 7), (5, 7), (3, 5), (3, 5))
    pee: bool = True
    mtl: bool = True
    ia: bool = True
    cff: bool = True
    align_corners: bool = False

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if len(self.pee_pool_sizes) != 4:
            raise ValueError("pee_pool_sizes needs one tuple of pooling sizes per stage (4)")
        if any(k % 2 == 0 for sizes in self.pee_pool_sizes for k in sizes):
            raise ValueError("PEE pooling sizes must be odd so that padding keeps the spatial size")
        if min(self.width, self.stage_channels, self.aspp_channels) < 1:
            raise ValueError("width, stage_channels and aspp_channels must be positive")
        if self.ia and not self.mtl:
            raise ValueError("ia=True needs mtl=True: interactive attention acts inside mini-MTL "
                             "(use the no_mtl ablation, which sets both False)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """Rebuild from :meth:`to_dict` output (lists from JSON become tuples again)."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        values = dict(data)
        if "aspp_rates" in values:
            values["aspp_rates"] = tuple(values["aspp_rates"])
        if "pee_pool_sizes" in values:
            values["pee_pool_sizes"] = tuple(tuple(s) for s in values["pee_pool_sizes"])
        return cls(**values)

    def with_ablation(self, name: str) -> "ModelConfig":
        """Return a copy with the named ablation of Table IV applied (see :data:`ABLATIONS`)."""
        if name not in ABLATIONS:
            raise ValueError(f"unknown ablation {name!r}; choose from {sorted(ABLATIONS)}")
        return replace(self, **ABLATIONS[name])


ABLATIONS: dict[str, dict[str, bool]] = {
    "full": {},
    "no_pee": {"pee": False},
    "no_mtl": {"mtl": False, "ia": False},
    "no_ia": {"ia": False},
    "no_cff": {"cff": False},
    "baseline": {"pee": False, "mtl": False, "ia": False, "cff": False},
}
"""The paper's ablation switches (Table IV). Without mini-MTL there is nothing for IA to act on."""

PRESETS: dict[str, ModelConfig] = {
    "paper": ModelConfig(backbone="resnet101"),
    "resnet50": ModelConfig(backbone="resnet50"),
    "small": ModelConfig(backbone="resnet18", width=32, stage_channels=64, aspp_channels=128),
    "tiny": ModelConfig(backbone="resnet18", width=16, stage_channels=32, aspp_channels=64),
}
"""Named configurations: ``paper`` is ResNet-101 as published; ``tiny``/``small`` serve CPU tests and demos."""
