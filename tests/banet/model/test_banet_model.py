"""BA-Net wiring: shapes, deep supervision, gradients, ablations, config round trip."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from banet.losses import DeepSupervisionLoss
from banet.model import ABLATIONS, BACKBONES, PRESETS, BANet, BANetOutput, ModelConfig, build_model

TINY = PRESETS["tiny"]


def _small(backbone: str) -> ModelConfig:
    return ModelConfig(backbone=backbone, width=8, stage_channels=8, aspp_channels=8)


@pytest.fixture(scope="module")
def tiny_model() -> BANet:
    torch.manual_seed(0)
    return build_model(TINY)


@pytest.mark.parametrize("size", [(64, 64), (63, 97), (128, 96), (33, 41)])
def test_eval_returns_logits_at_input_size(tiny_model, size):
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        out = tiny_model.eval()(x)
    assert isinstance(out, torch.Tensor)
    assert out.shape == (2, 1, *size) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("size", [(64, 64), (63, 97)])
def test_train_returns_deep_supervision_outputs(tiny_model, size):
    out = tiny_model.train()(torch.randn(2, 3, *size))
    assert isinstance(out, BANetOutput)
    assert out.logits.shape == (2, 1, *size)
    assert len(out.edge_logits) == len(out.seg_logits) == 4
    for e, s in zip(out.edge_logits, out.seg_logits):
        assert e.shape == s.shape == (2, 1, *size)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_backbone_builds_and_runs_odd_sizes(backbone):
    model = build_model(_small(backbone)).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 63, 97)).shape == (1, 1, 63, 97)
    expansion = 4 if backbone in ("resnet50", "resnet101") else 1
    assert model.aspp.branches[0][0].in_channels == 8 * 8 * expansion
    assert [sq[0].in_channels for sq in model.squeeze] == [8 * 2**i * expansion for i in range(4)]


def test_batch_items_are_independent_in_eval(tiny_model):
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        whole = tiny_model.eval()(x)
        single = tiny_model(x[1:2])
    assert torch.allclose(whole[1:2], single, atol=1e-5)


def test_gradients_reach_every_parameter_with_the_loss():
    torch.manual_seed(0)
    model = build_model(TINY).train()
    x = torch.randn(2, 3, 64, 64)
    mask = torch.zeros(2, 1, 64, 64)
    mask[:, :, 16:48, 20:40] = 1
    out = model(x)
    loss, parts = DeepSupervisionLoss()(out.logits, out.edge_logits, out.seg_logits, mask)
    loss.backward()
    assert set(parts) == {"main", "edge", "seg", "total"}
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []


def _ablation(name: str) -> BANet:
    torch.manual_seed(0)
    return build_model(TINY.with_ablation(name))


def _shapes(model: BANet) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_ablation_no_ia_keeps_parameters_and_changes_outputs():
    full, no_ia = _ablation("full"), _ablation("no_ia")
    assert _shapes(full) == _shapes(no_ia)
    no_ia.load_state_dict(full.state_dict())
    assert all(not m.ia for m in no_ia.mtl) and all(m.ia for m in full.mtl)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(full.eval()(x), no_ia.eval()(x))


def test_ablation_no_cff_keeps_parameters_and_changes_outputs():
    full, no_cff = _ablation("full"), _ablation("no_cff")
    assert _shapes(full) == _shapes(no_cff)
    no_cff.load_state_dict(full.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(full.eval()(x), no_cff.eval()(x))


def test_ablation_no_pee_removes_pee_modules_only():
    full, no_pee = _shapes(_ablation("full")), _shapes(_ablation("no_pee"))
    model = _ablation("no_pee")
    assert model.pee is None and not any(k.startswith("pee.") for k in no_pee)
    assert set(no_pee) == {k for k in full if not k.startswith("pee.")}
    out = model.train()(torch.randn(1, 3, 64, 64))
    assert len(out.edge_logits) == 4


def test_ablation_no_mtl_has_no_stage_outputs():
    model = _ablation("no_mtl")
    assert model.mtl is None and not any(k.startswith("mtl.") for k in model.state_dict())
    out = model.train()(torch.randn(2, 3, 64, 64))
    assert out.edge_logits == [] and out.seg_logits == []
    # the loss then reduces to its main term
    loss, parts = DeepSupervisionLoss()(out.logits, out.edge_logits, out.seg_logits, torch.ones(2, 1, 64, 64))
    assert set(parts) == {"main", "total"} and float(parts["total"]) == pytest.approx(float(parts["main"]))


def test_ablation_baseline_is_encoder_aspp_decoder_only():
    model = _ablation("baseline")
    assert model.pee is None and model.mtl is None and model.cff is None and not model.config.cff
    prefixes = {k.split(".")[0] for k in model.state_dict()}
    assert prefixes == {"encoder", "aspp", "squeeze", "decode4", "decode", "head"}
    out = model.train()(torch.randn(1, 3, 63, 97))
    assert out.logits.shape == (1, 1, 63, 97) and out.edge_logits == []
    sizes = {name: sum(p.numel() for p in _ablation(name).parameters()) for name in ABLATIONS}
    assert sizes["baseline"] < sizes["no_pee"] < sizes["full"]
    assert sizes["baseline"] < sizes["no_mtl"] < sizes["full"]
    assert sizes["no_ia"] == sizes["no_cff"] == sizes["full"]


@pytest.mark.parametrize("name, absent", [
    ("full", []),
    ("no_pee", ["PEE("]),
    ("no_mtl", ["MiniMTL(", "InteractiveAttention("]),
    ("no_ia", ["InteractiveAttention("]),
    ("no_cff", ["CrossFeatureFusion("]),
    ("baseline", ["PEE(", "MiniMTL(", "InteractiveAttention(", "CrossFeatureFusion("]),
])
def test_print_shows_the_graph_that_runs(name, absent):
    # an ablated part is not built at all (one mechanism for all four switches)
    text = str(_ablation(name))
    parts = ["PEE(", "MiniMTL(", "InteractiveAttention(", "CrossFeatureFusion("]
    for part in parts:
        assert (part in text) == (part not in absent), part


def test_config_refuses_ia_without_mtl():
    with pytest.raises(ValueError, match="ia=True needs mtl=True"):
        ModelConfig(mtl=False)
    with pytest.raises(ValueError, match="ia=True needs mtl=True"):
        replace(TINY, mtl=False)
    assert not TINY.with_ablation("no_mtl").ia  # the named ablation sets both


def test_config_round_trips_through_json():
    config = replace(TINY.with_ablation("no_ia"), aspp_rates=(2, 4, 6), align_corners=True)
    again = ModelConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and isinstance(again.pee_pool_sizes[0], tuple)


@pytest.mark.parametrize("kwargs, match", [
    ({"backbone": "vgg16"}, "backbone must be one of"),
    ({"pee_pool_sizes": ((3,), (3,), (3,))}, "one tuple of pooling sizes per stage"),
    ({"pee_pool_sizes": ((4,), (3,), (3,), (3,))}, "must be odd"),
    ({"width": 0}, "must be positive"),
])
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**kwargs)


def test_config_rejects_unknown_keys_and_ablations():
    with pytest.raises(ValueError, match="unknown model config keys: \\['depth'\\]"):
        ModelConfig.from_dict({"depth": 3})
    with pytest.raises(ValueError, match="unknown ablation 'no_aspp'"):
        TINY.with_ablation("no_aspp")


def test_paper_preset_is_the_published_configuration():
    paper = PRESETS["paper"]
    assert (paper.backbone, paper.width, paper.stage_channels, paper.aspp_channels) == ("resnet101", 64, 128, 256)
    assert paper.pee_pool_sizes == ((5, 7), (5, 7), (3, 5), (3, 5))
    assert paper.pee and paper.mtl and paper.ia and paper.cff and not paper.align_corners


def _reference_forward(model: BANet, x: torch.Tensor) -> torch.Tensor:
    """The paper's wiring written out from the submodules, independently of ``BANet.forward``."""
    import torch.nn.functional as F

    def up(t, ref):
        return F.interpolate(t, size=ref.shape[-2:], mode="bilinear", align_corners=model.config.align_corners)

    f1, f2, f3, f4 = model.encoder(x)
    aspp = model.aspp(f4)
    f_prime = [model.squeeze[i](f) for i, f in enumerate((f1, f2, f3, f4))]
    f_p = [model.pee[i](f) for i, f in enumerate(f_prime)]
    f_m = [model.mtl[i](f)[0] for i, f in enumerate(f_p)]
    f_c = []
    for i, fi in enumerate(f_m):                                  # eq. 10, term by term
        acc = torch.zeros_like(fi)
        for j, fj in enumerate(f_m):
            if j != i:
                acc = acc + up(torch.sigmoid(fj) * fj, fi)
        f_c.append(torch.relu(fi + (1 - torch.sigmoid(fi)) * acc))  # ReLU after the gate
    d = model.decode4(torch.cat([aspp, f_c[3]], dim=1))           # D4 = conv1x1([ASPP, F_4C])
    d = model.decode[0](torch.cat([d, f_c[2]], dim=1))            # D3 = conv1x1([D4, F_3C])
    d = model.decode[1](torch.cat([d, f_c[1]], dim=1))            # D2
    d = model.decode[2](torch.cat([up(d, f_c[0]), f_c[0]], dim=1))  # D1 at 1/4
    return up(model.head(d), x)


@pytest.mark.parametrize("size", [(64, 64), (63, 97)])
def test_forward_matches_the_paper_wiring(tiny_model, size):
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        tiny_model.eval()
        assert torch.allclose(tiny_model(x), _reference_forward(tiny_model, x), atol=1e-5)


def test_align_corners_is_one_switch_for_every_resize(tiny_model):
    torch.manual_seed(0)
    aligned = build_model(replace(TINY, align_corners=True)).eval()
    aligned.load_state_dict(tiny_model.state_dict())  # same parameters, another corner convention
    x = torch.randn(1, 3, 63, 97)
    with torch.no_grad():
        assert torch.allclose(aligned(x), _reference_forward(aligned, x), atol=1e-5)
        assert not torch.allclose(aligned(x), tiny_model.eval()(x), atol=1e-4)
