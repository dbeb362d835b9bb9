"""ResNet encoder: atrous last stages (output stride 8, BA-Net and DeepLabv3) or plain strides
(output stride 32, FCN-8s and CE-Net).

The module and parameter names follow torchvision's ResNet (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer1.0.downsample.0``, ...) so that an ImageNet state dict saved from torchvision loads as is;
the classifier (``fc``) and global pooling are not built. torchvision itself is not a dependency.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

# depth -> (block type, blocks per stage)
_LAYOUTS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}


def _conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, *, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride, dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, 1, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, *, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride, dilation)  # stride on the 3x3 (ResNet v1.5)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetEncoder(nn.Module):
    """ResNet without pooling/fc; returns the four stage outputs.

    By default (``dilate=(False, True, True)``, as torchvision's ``replace_stride_with_dilation``)
    stages 3 and 4 replace their stride by dilation 2 and 4, so for an input ``(B, 3, H, W)`` the
    outputs are at 1/4, 1/8, 1/8, 1/8 of the input (rounded up for odd sizes) with
    :attr:`out_channels` channels. ``dilate=(False, False, False)`` is the plain ResNet: 1/4, 1/8,
    1/16, 1/32 (:attr:`strides` gives them). The parameters are the same either way.
    """

    def __init__(self, name: str = "resnet101", width: int = 64, *,
                 dilate: tuple[bool, bool, bool] = (False, True, True)) -> None:
        super().__init__()
        if name not in _LAYOUTS:
            raise ValueError(f"unknown backbone {name!r}; choose from {sorted(_LAYOUTS)}")
        kind, blocks = _LAYOUTS[name]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.name = name
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self._cin = width
        self._dilation = 1
        planes = [width, width * 2, width * 4, width * 8]
        self.layer1 = self._make_layer(block, planes[0], blocks[0], stride=1)
        if len(dilate) != 3:
            raise ValueError(f"dilate needs one flag per stage 2-4 (3), got {dilate}")
        self.layer2 = self._make_layer(block, planes[1], blocks[1], stride=2, dilate=dilate[0])
        self.layer3 = self._make_layer(block, planes[2], blocks[2], stride=2, dilate=dilate[1])
        self.layer4 = self._make_layer(block, planes[3], blocks[3], stride=2, dilate=dilate[2])
        self.out_channels = tuple(p * block.expansion for p in planes)
        strides, stride = [4], 4
        for flag in dilate:
            stride = stride if flag else stride * 2
            strides.append(stride)
        self.strides = tuple(strides)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block, planes: int, count: int, *, stride: int, dilate: bool = False):
        previous_dilation = self._dilation
        if dilate:
            self._dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self._cin != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self._cin, planes * block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self._cin, planes, stride=stride, dilation=previous_dilation,
                        downsample=downsample)]
        self._cin = planes * block.expansion
        layers += [block(self._cin, planes, dilation=self._dilation) for _ in range(1, count)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        f1 = self.layer1(x)   # 1/4
        f2 = self.layer2(f1)  # 1/8
        f3 = self.layer3(f2)  # 1/8 with dilation 2 (default), else 1/16
        f4 = self.layer4(f3)  # 1/8 with dilation 4 (default), else 1/32
        return [f1, f2, f3, f4]

    def load_imagenet(self, path: str | Path) -> None:
        """Load a torchvision-format ResNet state dict from a local file (``fc.*`` is ignored).

        Raises ValueError with the mismatching keys or shapes when the file is for another network.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ImageNet weights file not found: {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
        state = {k.removeprefix("module."): v for k, v in state.items() if not k.startswith("fc.")}
        own = self.state_dict()
        # torchvision's legacy ImageNet files predate BatchNorm's ``num_batches_tracked`` buffer;
        # it only matters for momentum=None BatchNorm, so keep our own value when it is absent.
        for key in set(own) - set(state):
            if key.endswith(".num_batches_tracked") or key == "num_batches_tracked":
                state[key] = own[key]
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
        if missing or unexpected or wrong:
            def head(keys):
                return ", ".join(keys[:5]) + (" ..." if len(keys) > 5 else "")
            raise ValueError(
                f"{path} does not match a {self.name} encoder (width {self.conv1.out_channels}): "
                f"{len(missing)} missing keys [{head(missing)}], {len(unexpected)} unexpected "
                f"[{head(unexpected)}], {len(wrong)} with wrong shapes [{head(wrong)}]"
            )
        self.load_state_dict(state)
