"""ResNet encoder: torchvision-compatible layout, output stride 8, ImageNet weight loading."""

from __future__ import annotations

import math

import pytest
import torch

from banet.model import build_model, ModelConfig
from banet.model.encoder import ResNetEncoder

# torchvision's published parameter counts minus the 1000-class fc layer (dilation adds none).
TORCHVISION_PARAMS_WITHOUT_FC = {
    "resnet18": 11_689_512 - (512 * 1000 + 1000),
    "resnet34": 21_797_672 - (512 * 1000 + 1000),
    "resnet50": 25_557_032 - (2048 * 1000 + 1000),
    "resnet101": 44_549_160 - (2048 * 1000 + 1000),
}
EXPANSION = {"resnet18": 1, "resnet34": 1, "resnet50": 4, "resnet101": 4}


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS_WITHOUT_FC))
def test_full_width_matches_torchvision_parameter_count(name):
    encoder = ResNetEncoder(name, width=64)
    assert sum(p.numel() for p in encoder.parameters()) == TORCHVISION_PARAMS_WITHOUT_FC[name]
    assert encoder.out_channels == tuple(c * EXPANSION[name] for c in (64, 128, 256, 512))


@pytest.mark.parametrize("name", sorted(EXPANSION))
@pytest.mark.parametrize("size", [(64, 64), (63, 97), (50, 33)])
def test_strides_are_4_8_8_8_with_stage_channels(name, size):
    width = 8
    encoder = ResNetEncoder(name, width=width).eval()
    h, w = size
    with torch.no_grad():
        feats = encoder(torch.randn(1, 3, h, w))
    assert len(feats) == 4
    strides = (4, 8, 8, 8)
    for i, (f, s) in enumerate(zip(feats, strides)):
        assert tuple(f.shape[-2:]) == (math.ceil(h / s), math.ceil(w / s)), f"stage {i + 1}"
        assert f.shape[1] == encoder.out_channels[i] == width * 2**i * EXPANSION[name]


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_last_two_stages_are_atrous_not_strided(name):
    encoder = ResNetEncoder(name, width=8)
    for layer, dilation in ((encoder.layer3, 2), (encoder.layer4, 4)):
        for module_name, m in layer.named_modules():
            if isinstance(m, torch.nn.Conv2d):
                assert m.stride == (1, 1), module_name
        # torchvision's replace_stride_with_dilation: the first block of a stage keeps the previous
        # stage's dilation (on both 3x3s of a basic block), the following blocks use the new one
        first = [m.dilation[0] for m in layer[0].modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
        rest = [m.dilation[0] for b in layer[1:] for m in b.modules()
                if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
        assert set(first) == {dilation // 2} and set(rest) == {dilation}
    assert all(m.dilation == (1, 1) for m in encoder.layer2.modules() if isinstance(m, torch.nn.Conv2d))
    strided = [n for n, m in encoder.layer2.named_modules() if isinstance(m, torch.nn.Conv2d) and m.stride == (2, 2)]
    # ResNet v1.5: the stride sits on the 3x3 (conv2 of a bottleneck, conv1 of a basic block)
    assert strided == (["0.conv2", "0.downsample.0"] if name == "resnet50" else ["0.conv1", "0.downsample.0"])


def test_parameter_names_follow_torchvision():
    keys = set(ResNetEncoder("resnet50", width=8).state_dict())
    for key in ("conv1.weight", "bn1.running_mean", "layer1.0.conv3.weight",
                "layer1.0.downsample.0.weight", "layer1.0.downsample.1.num_batches_tracked",
                "layer4.2.bn3.bias"):
        assert key in keys
    assert not any(k.startswith("fc.") for k in keys)


def _torchvision_style_file(encoder, path, *, legacy=False):
    """What ``torch.save(torchvision_resnet.state_dict(), path)`` holds: the encoder plus ``fc.*``."""
    state = {k: v.clone() for k, v in encoder.state_dict().items()}
    if legacy:  # weights saved before BatchNorm had a num_batches_tracked buffer
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    state["fc.weight"] = torch.randn(1000, encoder.out_channels[-1])
    state["fc.bias"] = torch.randn(1000)
    torch.save(state, path)
    return path


@pytest.mark.parametrize("legacy", [False, True])
def test_imagenet_weights_load_from_torchvision_format(tmp_path, legacy):
    torch.manual_seed(1)
    source = ResNetEncoder("resnet18", width=8)
    with torch.no_grad():  # give BatchNorm non-default statistics so they are checked too
        for m in source.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    path = _torchvision_style_file(source, tmp_path / "resnet18.pth", legacy=legacy)
    torch.manual_seed(2)
    target = ResNetEncoder("resnet18", width=8)
    assert not torch.equal(target.conv1.weight, source.conv1.weight)
    target.load_imagenet(path)
    for key, value in source.state_dict().items():
        if not (legacy and key.endswith("num_batches_tracked")):
            assert torch.equal(target.state_dict()[key], value), key


def test_imagenet_weights_through_build_model(tmp_path):
    config = ModelConfig(backbone="resnet18", width=8, stage_channels=8, aspp_channels=8)
    source = ResNetEncoder("resnet18", width=8)
    path = _torchvision_style_file(source, tmp_path / "w.pth")
    model = build_model(config, imagenet_weights=path)
    assert torch.equal(model.encoder.layer4[1].conv2.weight, source.layer4[1].conv2.weight)


def test_imagenet_weights_accept_wrapped_and_prefixed_state(tmp_path):
    source = ResNetEncoder("resnet18", width=8)
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "wrapped.pth")
    target = ResNetEncoder("resnet18", width=8)
    target.load_imagenet(tmp_path / "wrapped.pth")
    assert torch.equal(target.conv1.weight, source.conv1.weight)


def test_imagenet_weights_for_another_network_are_refused(tmp_path):
    path = _torchvision_style_file(ResNetEncoder("resnet18", width=8), tmp_path / "r18.pth")
    with pytest.raises(ValueError, match=r"r18\.pth does not match a resnet34 encoder.*missing keys \[layer1\.2"):
        ResNetEncoder("resnet34", width=8).load_imagenet(path)
    with pytest.raises(ValueError, match=r"width 16.*wrong shapes \[bn1\."):
        ResNetEncoder("resnet18", width=16).load_imagenet(path)


def test_imagenet_weights_missing_or_not_a_state_dict(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        ResNetEncoder("resnet18", width=8).load_imagenet(tmp_path / "nope.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="expected a state dict, got list"):
        ResNetEncoder("resnet18", width=8).load_imagenet(tmp_path / "list.pth")


def test_unknown_backbone_is_refused():
    with pytest.raises(ValueError, match="resnet152"):
        ResNetEncoder("resnet152")
