"""``python -m references.precision.tensorrt_builds``: a real export of a tiny checkpoint, built by the TensorRT
builder here (TensorRT-RTX, CPU-only ahead of time), written through the one results writer, never over an
existing result."""

from __future__ import annotations

import json
import shlex

import pytest

pytest.importorskip("onnxruntime")

pytestmark = [pytest.mark.needs_data, pytest.mark.needs_trt_builder]


def test_writes_builder_rows_and_parity_and_refuses_to_overwrite(centred_checkpoint, data_root, tmp_path, capsys):
    from references.precision.tensorrt_builds import main

    kvasir = data_root / "kvasir-seg"
    argv = ["--checkpoint", str(centred_checkpoint(64)), "--image-size", "64", "--calib-data", f"{kvasir}:train",
            "--calib-count", "8", "--parity-data", f"{kvasir}:test", "--parity-count", "2",
            "--name", "trt", "--results", str(tmp_path), "--note", "tiny test run"]
    assert main(argv) == 0
    report = json.loads((tmp_path / "trt.json").read_text())
    assert report["command"].endswith("-m references.precision.tensorrt_builds " + shlex.join(argv))
    assert len(report["machine"]["load_average"]) == 3 and report["note"] == "tiny test run"
    rows = {r["precision"]: r for r in report["rows"]}
    assert {"fp32", "fp16", "int8"} <= set(rows)
    assert all(r["engine"].get("status") == "built" for p, r in rows.items() if p in ("fp32", "fp16")), rows
    md = (tmp_path / "trt.md").read_text()
    assert report["command"] in md and "load average" in md and "> tiny test run" in md
    assert "| onnx_fp16 |" in md or "onnx_fp16" in md
    capsys.readouterr()
    assert main(argv) == 2  # the finished result is not replaced without --force
    assert "pass --force" in capsys.readouterr().err
    assert json.loads((tmp_path / "trt.json").read_text())["machine"]["date"] == report["machine"]["date"]
