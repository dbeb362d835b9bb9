"""``python -m references.precision.precision_parity``: a real export of the tiny checkpoint, its parity and ONNX Runtime
latency ratios, written as JSON + Markdown, never over an existing result."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.needs_data


def test_report_writes_export_parity_and_latency_ratios(centred_checkpoint, data_root, tmp_path, capsys):
    from references.precision.precision_parity import main

    kvasir = data_root / "kvasir-seg"
    argv = ["--checkpoint", str(centred_checkpoint(64)), "--image-size", "64", "--calib-data", f"{kvasir}:train",
            "--calib-count", "8", "--parity-data", f"{kvasir}:test", "--parity-count", "3", "--rounds", "2",
            "--name", "tiny", "--results", str(tmp_path)]
    assert main(argv) == 0
    report = json.loads((tmp_path / "tiny.json").read_text())
    assert report["command"].endswith("-m references.precision.precision_parity " + " ".join(argv))
    assert report["machine"]["cores"] >= 1 and len(report["machine"]["load_average"]) == 3
    artifacts = {(a["precision"], a.get("io", "float32")) for a in report["manifest"]["artifacts"]}
    assert artifacts == {(p, io) for p in ("fp32", "fp16", "int8") for io in ("float32", "uint8")}
    for batch, rows in report["latency"].items():  # every ratio is that artifact's median over FP32's
        assert set(rows) == {"fp32", "fp16", "int8"}, batch
        for row in rows.values():
            assert row["ratio_vs_fp32"] == pytest.approx(row["median_ms"] / rows["fp32"]["median_ms"])
    md = (tmp_path / "tiny.md").read_text()
    assert report["command"] in md and "int8" in md
    capsys.readouterr()
    assert main(argv) == 2  # the finished result is not replaced without --force
    assert "pass --force" in capsys.readouterr().err
    assert json.loads((tmp_path / "tiny.json").read_text())["date"] == report["date"]
