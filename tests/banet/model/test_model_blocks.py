"""BA-Net blocks against the paper's equations, computed by hand on small tensors."""

from __future__ import annotations

import math

import pytest
import torch

from banet.model.blocks import (
    ASPP,
    PEE,
    CrossFeatureFusion,
    InteractiveAttention,
    MiniMTL,
    cross_feature_fusion,
    interactive_attention,
)


def _sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def test_interactive_attention_equation_5_by_hand():
    e_vals, s_vals = [0.0, 2.0, -1.5], [1.0, -1.0, 3.0]
    e = torch.tensor(e_vals).view(1, 3, 1, 1)
    s = torch.tensor(s_vals).view(1, 3, 1, 1)
    e_new, s_new = interactive_attention(e, s)
    # E' = E + (1 - sig(E)) * S ; S' = S + (1 - sig(S)) * E, both from the features before the exchange
    want_e = [ev + (1 - _sig(ev)) * sv for ev, sv in zip(e_vals, s_vals)]
    want_s = [sv + (1 - _sig(sv)) * ev for ev, sv in zip(e_vals, s_vals)]
    assert e_new.flatten().tolist() == pytest.approx(want_e, abs=1e-6)
    assert s_new.flatten().tolist() == pytest.approx(want_s, abs=1e-6)
    # the first value by hand: 0 + (1 - 0.5) * 1 = 0.5 and 1 + (1 - sig(1)) * 0 = 1
    assert e_new.flatten()[0].item() == pytest.approx(0.5)
    assert s_new.flatten()[0].item() == pytest.approx(1.0)
    # a sequential update (S from the new E) would give a different S'
    sequential = s + (1 - torch.sigmoid(s)) * e_new
    assert not torch.allclose(sequential, s_new)


def test_cross_feature_fusion_equation_10_by_hand_same_size():
    vals = [0.5, -1.0, 2.0]
    feats = [torch.full((1, 1, 2, 2), v) for v in vals]
    fused = cross_feature_fusion(feats)
    for i, out in enumerate(fused):
        others = sum(_sig(v) * v for j, v in enumerate(vals) if j != i)
        want = vals[i] + (1 - _sig(vals[i])) * others
        assert torch.allclose(out, torch.full_like(out, want), atol=1e-6), i


def test_cross_feature_fusion_resizes_other_stages():
    # stage 1 at 4x4, stage 2 at 2x2; a constant map stays constant under bilinear resize
    f1 = torch.tensor([[1.0, -2.0, 0.0, 3.0]]).view(1, 1, 1, 4).expand(1, 1, 4, 4).contiguous()
    f2 = torch.full((1, 1, 2, 2), 0.7)
    out1, out2 = cross_feature_fusion([f1, f2])
    assert out1.shape == f1.shape and out2.shape == f2.shape
    want1 = f1 + (1 - torch.sigmoid(f1)) * (_sig(0.7) * 0.7)
    assert torch.allclose(out1, want1, atol=1e-6)
    # f1's gated map sigmoid(f1)*f1 is resized (bilinear, half-pixel) to 2x2: columns average in pairs
    g = [_sig(v) * v for v in (1.0, -2.0, 0.0, 3.0)]
    want_cols = [(g[0] + g[1]) / 2, (g[2] + g[3]) / 2]
    want2 = [0.7 + (1 - _sig(0.7)) * c for c in want_cols]
    assert out2[0, 0, 0].tolist() == pytest.approx(want2, abs=1e-6)
    assert out2[0, 0, 1].tolist() == pytest.approx(want2, abs=1e-6)


def test_pee_edges_are_feature_minus_average_pool():
    pee = PEE(2, (3, 5))
    assert [p.kernel_size for p in pee.pools] == [3, 5]
    assert all(p.stride == 1 for p in pee.pools)
    # a constant map has no edges anywhere, the image border included (padding is not averaged)
    flat = torch.full((1, 2, 7, 9), 3.0)
    for pool in pee.pools:
        assert torch.allclose(flat - pool(flat), torch.zeros_like(flat))
    # a vertical step: F' - avgpool_3(F') by hand at the two columns next to the step
    step = torch.zeros(1, 2, 5, 6)
    step[..., 3:] = 9.0
    edge = step - pee.pools[0](step)
    assert edge[0, 0, 2, 2].item() == pytest.approx(0 - 3.0)   # window holds one column of 9s
    assert edge[0, 0, 2, 3].item() == pytest.approx(9 - 6.0)   # window holds two columns of 9s
    assert edge[0, 0, 2, 0].item() == pytest.approx(0.0)
    assert pee(step).shape == step.shape
    assert pee.merge[0].in_channels == 2 * 3  # [F', edge_3, edge_5]


def test_pee_merge_sees_concatenation_of_feature_and_edges():
    pee = PEE(1, (3,)).eval()
    conv = pee.merge[0]
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([0.0, 1.0]).view(1, 2, 1, 1))  # output = edge channel only
    x = torch.randn(1, 1, 6, 6)
    bn = pee.merge[1]
    # PEE reads ReLU(F') and ends at BatchNorm: its output F_P is pre-activation (no ReLU)
    r = torch.relu(x)
    want = (r - pee.pools[0](r) - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps)
    assert torch.allclose(pee(x), want, atol=1e-5)
    assert (pee(x) < 0).any()


def test_aspp_has_four_atrous_branches_and_global_pooling():
    aspp = ASPP(8, out_channels=12, rates=(6, 12, 18))
    convs = [b[0] for b in aspp.branches]
    assert [c.kernel_size for c in convs] == [(1, 1), (3, 3), (3, 3), (3, 3)]
    assert [c.dilation[0] for c in convs] == [1, 6, 12, 18]
    assert isinstance(aspp.pool[0], torch.nn.AdaptiveAvgPool2d)
    assert aspp.project[0].in_channels == 5 * 12 and aspp.project[0].out_channels == 12
    x = torch.randn(1, 8, 5, 7)
    assert aspp.train()(x).shape == (1, 12, 5, 7)  # batch size 1 trains (no BatchNorm on the pool)


def test_mini_mtl_branches_and_ia_switch():
    torch.manual_seed(0)
    with_ia = MiniMTL(4, ia=True)
    without = MiniMTL(4, ia=False)
    assert [(k, v.shape) for k, v in with_ia.state_dict().items()] == \
        [(k, v.shape) for k, v in without.state_dict().items()]
    without.load_state_dict(with_ia.state_dict())
    for m in (with_ia, without):
        m.eval()
        assert [c.kernel_size for c in (m.edge1[0], m.edge2[0], m.seg1[0], m.seg2[0])] == [(3, 3)] * 4
    x = torch.randn(2, 4, 6, 5)
    fm, edge, seg = with_ia(x)
    assert fm.shape == (2, 4, 6, 5) and edge.shape == seg.shape == (2, 1, 6, 5)
    fm2, edge2, seg2 = without(x)
    assert not torch.allclose(edge, edge2) and not torch.allclose(seg, seg2)
    assert isinstance(with_ia.ia, InteractiveAttention) and without.ia is None
    assert "InteractiveAttention" in str(with_ia) and "InteractiveAttention" not in str(without)
    # by hand: IA acts on the pre-activation outputs of the first convolutions (Conv -> BN, no
    # ReLU), ReLU follows the exchange; the merge ends at BatchNorm (F_M is pre-activation)
    r = torch.relu(x)
    e1, s1 = with_ia.edge1(r), with_ia.seg1(r)
    assert (e1 < 0).any() and (s1 < 0).any()
    e, s = interactive_attention(e1, s1)
    e, s = with_ia.edge2(torch.relu(e)), with_ia.seg2(torch.relu(s))
    assert torch.allclose(edge, with_ia.edge_head(e), atol=1e-6)
    assert torch.allclose(fm, with_ia.merge(torch.cat([e, s], 1)), atol=1e-6)
    assert (fm < 0).any()
    # without IA the branches never meet: ReLU right after the first convolution
    e0 = without.edge2(torch.relu(without.edge1(r)))
    assert torch.allclose(edge2, without.edge_head(e0), atol=1e-6)


def test_gate_modules_compute_their_equations():
    e, s = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    for got, want in zip(InteractiveAttention()(e, s), interactive_attention(e, s)):
        assert torch.equal(got, want)
    feats = [torch.randn(1, 3, 8, 8), torch.randn(1, 3, 4, 4)]
    for align in (False, True):
        got = CrossFeatureFusion(align)(feats)
        want = cross_feature_fusion(feats, align_corners=align)
        assert all(torch.equal(g, w) for g, w in zip(got, want))
    # the corner convention matters once a stage is resized
    assert not torch.allclose(CrossFeatureFusion(True)(feats)[0], CrossFeatureFusion(False)(feats)[0])
