"""The ONNX graph: names, opset, dynamic batch, checker; ONNX Runtime vs PyTorch on real images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from banet.spec import BATCH_AXIS_NAME, NETWORK_INPUT, NETWORK_OUTPUT, ONNX_OPSET

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxsim")


@pytest.fixture(scope="module")
def fp32_onnx(tiny_checkpoint, tmp_path_factory) -> tuple[Path, object]:
    from banet.checkpoint import model_from_checkpoint
    from export.onnx import export_onnx, simplify_onnx

    model, _ = model_from_checkpoint(tiny_checkpoint)
    folder = tmp_path_factory.mktemp("onnx")
    export_onnx(model, folder / "raw.onnx", image_size=64)
    before, after = simplify_onnx(folder / "raw.onnx", folder / "model.onnx")
    assert after < before, "onnxsim should fold the exported graph"
    return folder / "model.onnx", model


def test_graph_names_opset_and_shapes(fp32_onnx):
    from export.onnx import check_onnx

    path, _ = fp32_onnx
    info = check_onnx(path)
    assert info["opset"] == ONNX_OPSET
    assert info["inputs"] == {NETWORK_INPUT.name: [BATCH_AXIS_NAME, 3, 64, 64]}
    assert info["outputs"] == {NETWORK_OUTPUT.name: [BATCH_AXIS_NAME, 1, 64, 64]}


@pytest.mark.parametrize("batch", [1, 3])
def test_dynamic_batch_matches_pytorch(fp32_onnx, batch):
    import torch

    from export.onnxruntime import ort_runner

    path, model = fp32_onnx
    x = np.random.default_rng(batch).normal(size=(batch, 3, 64, 64)).astype(np.float32)
    got = ort_runner(path, threads=1)(x)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    assert got.shape == (batch, 1, 64, 64) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_checker_rejects_wrong_names(fp32_onnx, tmp_path):
    from export.onnx import OnnxExportError, check_onnx

    model = onnx.load(str(fp32_onnx[0]))
    old = model.graph.input[0].name
    model.graph.input[0].name = "input0"
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = "input0"
    onnx.save(model, str(tmp_path / "renamed.onnx"))
    with pytest.raises(OnnxExportError, match="expected one tensor named 'image'"):
        check_onnx(tmp_path / "renamed.onnx")


@pytest.mark.needs_data
def test_ort_matches_pytorch_on_real_images(exported):
    fp32 = next(a for a in exported["artifacts"] if a["name"] == "onnx_fp32")
    par = fp32["parity"]
    assert fp32["gate"] == "pass", par["reasons"]
    assert par["images"] == 12
    assert par["max_abs_logit_diff"] < 1e-3
    assert par["mean_agreement"] >= 0.999
    # masks must have real boundaries for agreement to mean anything
    assert 0.05 < par["reference_foreground"] < 0.95


def test_align_corners_model_exports_and_matches_pytorch(tmp_path):
    # the `official` recipe (the authors' code) resizes with align_corners=True: ONNX Resize's
    # "align_corners" mode must give the same logits
    from dataclasses import replace

    import torch

    from banet.model import PRESETS, build_model
    from export.onnx import export_onnx
    from export.onnxruntime import ort_runner

    torch.manual_seed(0)
    model = build_model(replace(PRESETS["tiny"], align_corners=True)).eval()
    export_onnx(model, tmp_path / "aligned.onnx", image_size=64)
    resize_modes = {a.s.decode() for n in onnx.load(str(tmp_path / "aligned.onnx")).graph.node
                    if n.op_type == "Resize" for a in n.attribute if a.name == "coordinate_transformation_mode"}
    assert resize_modes == {"align_corners"}
    x = np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ort_runner(tmp_path / "aligned.onnx", threads=1)(x), want, atol=1e-4, rtol=1e-4)
