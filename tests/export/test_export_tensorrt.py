"""TensorRT and Torch-TensorRT routes: what this machine allows (commands, profile) and, on GPU hosts,
a real build with parity. The mypy check of the TensorRT API use is in test_typecheck.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from banet.spec import MAX_BATCH_SIZE, NETWORK_INPUT, OPT_BATCH_SIZE
from export import tensorrt as trt_route


def test_profile_follows_the_spec():
    shapes = trt_route.profile_shapes(128)
    assert shapes == {"min": (1, 3, 128, 128), "opt": (OPT_BATCH_SIZE, 3, 128, 128),
                      "max": (MAX_BATCH_SIZE, 3, 128, 128)}


def test_trtexec_command():
    cmd = trt_route.trtexec_command("out/1/model_fp16.onnx", "out/1/model_fp16.plan", image_size=256,
                                    timing_cache="out/1/timing.cache", workspace_gib=2)
    assert cmd == ("trtexec --onnx=out/1/model_fp16.onnx --saveEngine=out/1/model_fp16.plan "
                   f"--minShapes={NETWORK_INPUT.name}:1x3x256x256 --optShapes={NETWORK_INPUT.name}:8x3x256x256 "
                   f"--maxShapes={NETWORK_INPUT.name}:32x3x256x256 --stronglyTyped --memPoolSize=workspace:2048M "
                   "--timingCacheFile=out/1/timing.cache")
    assert "--fp16" not in cmd and "--int8" not in cmd  # removed in TensorRT 11: precision is in the graph


@pytest.mark.needs_tensorrt
def test_torch_tensorrt_refuses_int8_route():
    pytest.importorskip("torch_tensorrt", reason="torch_tensorrt is not installed (not installable here)")
    from export.torch_tensorrt import _prepare

    with pytest.raises(ValueError, match="INT8 engines come from the ONNX Q/DQ route"):
        _prepare(None, "int8", 64)


@pytest.mark.needs_tensorrt
@pytest.mark.needs_data
def test_engine_builds_and_matches(exported, tmp_path):
    from export import parity

    folder = Path(exported["directory"])
    for art in exported["artifacts"]:
        engine = trt_route.build_engine(folder / art["path"], tmp_path / f"{art['precision']}.plan", image_size=64,
                                        timing_cache=tmp_path / "timing.cache", workspace_gib=1)
        run = trt_route.engine_runner(engine)
        for batch in (1, 3, MAX_BATCH_SIZE):
            assert run(np.zeros((batch, 3, 64, 64), np.float32)).shape == (batch, 1, 64, 64)
    assert (tmp_path / "timing.cache").stat().st_size > 0
    assert parity.DEFAULT_GATES  # parity of engines runs inside run_export when TensorRT is present


@pytest.mark.needs_tensorrt
def test_torch_tensorrt_route(tiny_checkpoint, tmp_path):
    pytest.importorskip("torch_tensorrt")
    import torch

    from banet.checkpoint import model_from_checkpoint
    from export.torch_tensorrt import compiled_runner, serialize_engine

    model, _ = model_from_checkpoint(tiny_checkpoint)
    x = np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    got = compiled_runner(model, precision="fp32", image_size=64)(x)
    np.testing.assert_allclose(got, want, atol=1e-3)
    assert serialize_engine(model.float().cpu(), tmp_path / "m.plan", precision="fp16", image_size=64).stat().st_size > 0
