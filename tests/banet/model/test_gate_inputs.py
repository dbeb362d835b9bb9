"""The attention gates see both signs inside the real model (forward hooks on the built BA-Net).

Interactive attention (eq. 5) and cross feature fusion (eq. 10) gate with ``sigmoid(x)`` and
``1 - sigmoid(x)``. On post-ReLU features (x >= 0) the reverse gate would be stuck in (0, 0.5];
these tests read the gates' real inputs from images, in train and in eval mode, at
initialisation and after a few training steps (BatchNorm statistics no longer the defaults).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from banet import processing
from banet.data.synthetic import make_sample
from banet.losses import DeepSupervisionLoss
from banet.model import PRESETS, build_model

SIZE = 64


def _images(data_root=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Four images ``(4, 3, S, S)`` normalized as in training and their masks ``(4, 1, S, S)``."""
    if data_root is None:
        rng = np.random.default_rng(0)
        samples = [make_sample(rng, SIZE) for _ in range(4)]
    else:
        from banet.data.pairs import find_pairs

        pairs = find_pairs(data_root / "kvasir-seg", "train")[:4]
        samples = [(processing.load_image(p.image), processing.load_mask(p.mask)) for p in pairs]
    x = np.stack([processing.preprocess(image, SIZE) for image, _ in samples])
    y = np.stack([processing.resize_mask(mask, SIZE) for _, mask in samples])[:, None]
    return torch.from_numpy(x), torch.from_numpy(y.astype(np.float32))


def _briefly_trained(config, x, y):
    torch.manual_seed(0)
    model = build_model(config).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = DeepSupervisionLoss()
    for _ in range(2):
        out = model(x)
        loss, _ = loss_fn(out.logits, out.edge_logits, out.seg_logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def _gate_inputs(model, x) -> dict[str, list[torch.Tensor]]:
    """Every tensor that a gate reads in one forward pass, by gate."""
    seen: dict[str, list[torch.Tensor]] = {"ia": [], "cff": []}

    def keep(kind):
        def hook(module, args):
            tensors = args[0] if kind == "cff" else args  # CFF takes the list of stages, IA (e, s)
            seen[kind].extend(t.detach() for t in tensors)
        return hook

    handles = []
    for mtl in model.mtl or []:
        if mtl.ia is not None:
            handles.append(mtl.ia.register_forward_pre_hook(keep("ia")))
    if model.cff is not None:
        handles.append(model.cff.register_forward_pre_hook(keep("cff")))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return seen


def _check_both_signs(seen, expected_kinds, *, reverse_gate_above: float = 0.5):
    assert {k for k, v in seen.items() if v} == expected_kinds
    for kind in expected_kinds:
        assert len(seen[kind]) == (8 if kind == "ia" else 4)  # (E_i, S_i) x 4 stages, or F_1M..F_4M
        for i, t in enumerate(seen[kind]):
            negative = (t < 0).float().mean().item()
            # both signs in every gate input, so the reverse gate 1 - sigmoid exceeds 0.5 somewhere
            assert 0.05 < negative < 0.95, f"{kind} input {i}: {negative:.1%} negative"
            assert (1 - torch.sigmoid(t)).max() > reverse_gate_above, f"{kind} input {i}"


@pytest.mark.parametrize("ablation, kinds", [
    ("full", {"ia", "cff"}),
    ("no_pee", {"ia", "cff"}),
    ("no_ia", {"cff"}),
    ("no_cff", {"ia"}),
    ("no_mtl", {"cff"}),  # CFF then fuses F_P, also pre-activation
])
def test_gate_inputs_take_both_signs_in_the_real_model(ablation, kinds):
    x, _ = _images()
    torch.manual_seed(0)
    model = build_model(PRESETS["tiny"].with_ablation(ablation))
    # train mode: BatchNorm-normalized inputs, so the reverse gate reaches far above 0.5
    _check_both_signs(_gate_inputs(model.train(), x), kinds, reverse_gate_above=0.9)
    _check_both_signs(_gate_inputs(model.eval(), x), kinds)


@pytest.fixture(scope="module")
def trained():
    """The full tiny model after two Adam steps on synthetic lesions (BatchNorm statistics moved)."""
    return _briefly_trained(PRESETS["tiny"], *_images())


def test_gate_inputs_take_both_signs_after_training_steps(trained):
    x, _ = _images()
    _check_both_signs(_gate_inputs(trained.train(), x), {"ia", "cff"}, reverse_gate_above=0.9)
    _check_both_signs(_gate_inputs(trained.eval(), x), {"ia", "cff"})


@pytest.mark.needs_data
def test_gate_inputs_take_both_signs_on_kvasir_images(trained, data_root):
    x, _ = _images(data_root)
    _check_both_signs(_gate_inputs(trained.train(), x), {"ia", "cff"}, reverse_gate_above=0.9)
    _check_both_signs(_gate_inputs(trained.eval(), x), {"ia", "cff"})


def test_baseline_has_no_gates():
    model = build_model(PRESETS["tiny"].with_ablation("baseline"))
    assert model.cff is None and model.mtl is None
    assert _gate_inputs(model.eval(), torch.randn(1, 3, SIZE, SIZE)) == {"ia": [], "cff": []}
