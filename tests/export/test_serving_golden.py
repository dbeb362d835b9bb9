"""Golden output of the exported serving graph (segmentation_models_pytorch keeps stored outputs of its models).

A fixed tiny BA-Net (weights drawn from numpy's seeded generator, not torch's initialisers, so a
torch upgrade that changes ``reset_parameters`` does not move them) goes through the project's own
export chain: checkpoint -> :func:`export.onnx.export_onnx` -> :func:`export.onnx.simplify_onnx`
-> :func:`export.serving_graph.add_uint8_io`, the chain ``run_export`` writes ``model_fp32_serving.onnx``
with. ONNX Runtime runs the graph on a fixed uint8 image made by integer arithmetic; the float16
probability and the mask the served path makes of it (:func:`banet.processing.mask_from_probability`)
are compared with ``golden/serving_fp32_64px.npz``. A change of the normalization constants, the
sigmoid, the cast, the transpose or the mask threshold moves them beyond the tolerance.

Regenerate deliberately (and say why in the commit)::

    BANET_UPDATE_GOLDEN=1 python -m pytest tests/export/test_serving_golden.py
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxsim")

SIZE = 64
GOLDEN = Path(__file__).parent / "golden" / f"serving_fp32_{SIZE}px.npz"
UPDATE = os.environ.get("BANET_UPDATE_GOLDEN") == "1"
PROBABILITY_ATOL = 2e-3
"""Float16 holds a probability near 0.5 to 2.4e-4 and ONNX Runtime's kernels on another CPU move the
float32 logits by ~1e-6: 2e-3 is eight float16 steps. Drift of the served arithmetic is far larger (a
normalization mean off by 0.01, 0.485 -> 0.495, moves it by up to 0.38 on 5600 of 8192 pixels)."""
NEAR_THRESHOLD = 5e-3
"""Mask pixels may differ only where the golden probability lies this close to the threshold."""


def _image() -> np.ndarray:
    """(2, SIZE, SIZE, 3) uint8: two fixed pictures (a disc on stripes, a gradient with a square), integers only."""
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.int64)
    disc = (x - 40) ** 2 + (y - 26) ** 2 < 18 ** 2
    first = np.stack([(x * 7 + y * 13) % 256, (x * 3 + 40) % 256, (y * 5 + 90) % 256], axis=-1)
    first[disc] = (230, 60, 70)
    second = np.stack([x * 4, y * 4, ((x + y) * 2) % 256], axis=-1)
    second[16:40, 20:52] = (20, 200, 120)
    return np.stack([first, second]).astype(np.uint8)


def _tiny_checkpoint(folder: Path) -> Path:
    """The fixed tiny BA-Net: numpy-seeded weights, head centred and scaled on the fixed image."""
    import torch

    from banet import processing
    from banet.checkpoint import save_checkpoint
    from banet.model import PRESETS, build_model

    model = build_model(PRESETS["tiny"]).eval()
    rng = np.random.default_rng(20)
    state = {}
    for name, tensor in model.state_dict().items():
        if not tensor.is_floating_point():
            state[name] = tensor
        elif name.endswith("running_var"):
            state[name] = torch.from_numpy(rng.uniform(0.5, 1.5, tensor.shape).astype(np.float32))
        elif name.endswith(("running_mean", "bias")):
            state[name] = torch.from_numpy((0.1 * rng.standard_normal(tensor.shape)).astype(np.float32))
        elif tensor.ndim == 1:  # norm scales
            state[name] = torch.from_numpy(rng.uniform(0.5, 1.5, tensor.shape).astype(np.float32))
        else:  # He-scaled weights
            fan_in = int(np.prod(tensor.shape[1:]))
            state[name] = torch.from_numpy((rng.standard_normal(tensor.shape) * np.sqrt(2.0 / fan_in)).astype(np.float32))
    model.load_state_dict(state)
    batch = torch.from_numpy(np.stack([processing.normalize(image) for image in _image()]))
    with torch.no_grad():  # about half of each picture foreground, logits spread like a trained model's
        model.head.bias -= model(batch).median()
        scale = 4.0 / float(model(batch).std())
        model.head.weight *= scale
        model.head.bias *= scale
    return save_checkpoint(folder / "golden_tiny.pt", model, note="fixed tiny weights of the serving golden test")


def _served(tmp_path: Path) -> dict[str, np.ndarray]:
    from banet import processing, spec
    from banet.checkpoint import model_from_checkpoint
    from export.onnx import export_onnx, simplify_onnx
    from export.onnxruntime import ort_session
    from export.serving_graph import add_uint8_io

    model, _ = model_from_checkpoint(_tiny_checkpoint(tmp_path))
    export_onnx(model, tmp_path / "raw.onnx", image_size=SIZE)
    simplify_onnx(tmp_path / "raw.onnx", tmp_path / "model_fp32.onnx")
    served = add_uint8_io(tmp_path / "model_fp32.onnx", tmp_path / "model_fp32_serving.onnx")
    session = ort_session(served, threads=1)
    (probability,) = session.run([spec.SERVING_OUTPUT.name], {spec.SERVING_INPUT.name: _image()})
    masks = np.stack([processing.mask_from_probability(p, (SIZE, SIZE)) for p in probability])
    return {"probability": probability, "mask": masks}


def test_serving_graph_matches_golden(tmp_path):
    got = _served(tmp_path)
    assert got["probability"].dtype == np.float16 and got["probability"].shape == (2, 1, SIZE, SIZE)
    if UPDATE:
        GOLDEN.parent.mkdir(exist_ok=True)
        np.savez_compressed(GOLDEN, probability=got["probability"], mask=np.packbits(got["mask"] > 0))
        pytest.skip(f"BANET_UPDATE_GOLDEN=1: wrote {GOLDEN}; review the change and commit it")
    assert GOLDEN.exists(), f"{GOLDEN} missing; create it with BANET_UPDATE_GOLDEN=1 (see the module docstring)"
    with np.load(GOLDEN) as stored:
        want_probability = stored["probability"]
        want_mask = np.unpackbits(stored["mask"])[: got["mask"].size].reshape(got["mask"].shape).astype(bool)
    foreground = want_mask.mean()
    assert 0.2 < foreground < 0.8, f"golden masks are {foreground:.0%} foreground: the golden would not see a threshold move"
    diff = np.abs(got["probability"].astype(np.float32) - want_probability.astype(np.float32))
    assert diff.max() <= PROBABILITY_ATOL, (
        f"served probability drifted from the golden: max |diff| {diff.max():.4g} > {PROBABILITY_ATOL} "
        f"at {np.unravel_index(diff.argmax(), diff.shape)}, {int((diff > PROBABILITY_ATOL).sum())} of {diff.size} pixels")
    flipped = (got["mask"] > 0) != want_mask
    from banet.spec import MASK_THRESHOLD

    near = np.abs(want_probability.astype(np.float32).reshape(flipped.shape) - MASK_THRESHOLD) <= NEAR_THRESHOLD
    assert not (flipped & ~near).any(), (
        f"served mask drifted from the golden: {int(flipped.sum())} pixels flipped, "
        f"{int((flipped & ~near).sum())} of them away from the threshold")
