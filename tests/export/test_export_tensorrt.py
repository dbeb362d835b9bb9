"""TensorRT and Torch-TensorRT routes: what this machine allows (commands, profile, API use checked
by mypy against the ``tensorrt-stubs`` type stubs) and, on GPU hosts, a real build with parity."""

from __future__ import annotations

import ast
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from banet.spec import MAX_BATCH_SIZE, NETWORK_INPUT, OPT_BATCH_SIZE
from export import tensorrt as trt_route

REPO = Path(__file__).resolve().parents[2]


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


def _stubs_dir(tmp_path: Path) -> Path:
    """The ``tensorrt-stubs`` wheel, downloaded with --no-deps (its dependency is an uninstallable stub)."""
    wheels = tmp_path / "wheels"
    result = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "tensorrt-stubs",
                             "-d", str(wheels)], capture_output=True, text=True, timeout=120)
    found = list(wheels.glob("tensorrt_stubs-*.whl")) if wheels.is_dir() else []
    if result.returncode != 0 or not found:
        pytest.skip(f"tensorrt-stubs could not be downloaded: {result.stderr.strip()[-200:]}")
    shutil.unpack_archive(found[0], tmp_path / "stubs", format="zip")
    return tmp_path / "stubs"


def _repair_stubs(root: Path) -> None:
    """tensorrt-stubs 10.13 has a few generated signatures that are not Python (a parameter named
    ``in``, defaults before non-defaults); give just those methods ``(*args, **kwargs) -> Any``."""
    pattern = re.compile(r"^(\s*)def (\w+)\((.*)\)\s*(->.*)?:\s*(.*)$")
    for pyi in root.rglob("*.pyi"):
        lines = pyi.read_text().splitlines()
        for i, line in enumerate(lines):
            match = pattern.match(line)
            if not match:
                continue
            try:
                ast.parse(line.strip() if line.rstrip().endswith("...") else line.strip() + " ...")
            except SyntaxError:
                indent, name, _, _, tail = match.groups()
                lines[i] = f"{indent}def {name}(*args: typing.Any, **kwargs: typing.Any) -> typing.Any:{' ' + tail if tail else ''}"
        pyi.write_text("\n".join(lines) + "\n")


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed (pip install mypy)")
def test_tensorrt_api_use_type_checks_against_stubs(tmp_path):
    """Every TensorRT call in export/tensorrt.py exists with these argument types in TensorRT 10.13."""
    stubs = _stubs_dir(tmp_path)
    _repair_stubs(stubs)
    # a probe that misuses the API proves the stubs were really read (one mypy run for both files)
    probe = tmp_path / "probe.py"
    probe.write_text("import tensorrt as trt\n\ndef f() -> None:\n    trt.BuilderFlag.NOT_A_FLAG\n")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--follow-imports=silent", "--ignore-missing-imports", "--no-incremental",
         "--cache-dir", str(tmp_path / "mypy-cache"), "export/tensorrt.py", str(probe)],
        capture_output=True, text=True, timeout=300, cwd=REPO,
        env={"MYPYPATH": str(stubs), "PATH": "/usr/bin:/bin"},
    )
    ours = [line for line in result.stdout.splitlines() if line.startswith("export/")]
    assert not ours, "\n".join(ours)
    assert "NOT_A_FLAG" in result.stdout, result.stdout[-2000:]


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
