"""Each comparison network's tiny configuration through the project's ONNX export: names, dynamic
batch, ONNX Runtime against PyTorch (logits and masks)."""

from __future__ import annotations

import numpy as np
import pytest

from banet.model import registry
from banet.spec import BATCH_AXIS_NAME, NETWORK_INPUT, NETWORK_OUTPUT

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxsim")

OTHERS = [a for a in registry.ARCHITECTURES if a != "banet"]
SIZE = 64


@pytest.mark.parametrize("arch", OTHERS)
def test_onnx_export_matches_pytorch(arch, tmp_path):
    import torch

    from export.onnx import check_onnx, export_onnx, simplify_onnx
    from export.onnxruntime import ort_runner

    torch.manual_seed(0)
    model = registry.build(arch, "tiny").train()
    with torch.no_grad():  # BatchNorm statistics that are not the defaults, as after training
        model(torch.randn(4, 3, SIZE, SIZE))
    model.eval()
    export_onnx(model, tmp_path / "raw.onnx", image_size=SIZE)
    simplify_onnx(tmp_path / "raw.onnx", tmp_path / "model.onnx")
    info = check_onnx(tmp_path / "model.onnx")
    assert info["inputs"] == {NETWORK_INPUT.name: [BATCH_AXIS_NAME, 3, SIZE, SIZE]}
    assert info["outputs"] == {NETWORK_OUTPUT.name: [BATCH_AXIS_NAME, 1, SIZE, SIZE]}
    x = np.random.default_rng(0).normal(size=(3, 3, SIZE, SIZE)).astype(np.float32)
    got = ort_runner(tmp_path / "model.onnx", threads=1)(x)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape == (3, 1, SIZE, SIZE)
    scale = float(np.abs(want).max())
    np.testing.assert_allclose(got, want, atol=1e-4 * max(scale, 1.0), rtol=1e-4)
    centred = want - np.median(want)  # masks with real boundaries: thresholds at the median logit
    assert ((got - np.median(want) > 0) == (centred > 0)).mean() > 0.999
