"""``python -m references.precision.int8_placement``: the export's INT8 placement of a tiny graph counted and
scored against its FP32 graph, written through the one results writer, never over an existing result."""

from __future__ import annotations

import json
import shlex

import pytest

pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.needs_data


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    import torch

    from banet.model import registry
    from export.onnx import export_onnx

    torch.manual_seed(0)
    return export_onnx(registry.build("banet", "tiny").eval(), tmp_path_factory.mktemp("onnx") / "model.onnx",
                       image_size=64)


def test_counts_scores_and_writes_and_refuses_to_overwrite(tiny_onnx, data_root, tmp_path, capsys):
    from references.precision.int8_placement import main

    kvasir = data_root / "kvasir-seg"
    argv = ["--onnx", str(tiny_onnx), "--calib-data", f"{kvasir}:train", "--calib-count", "8",
            "--parity-data", f"{kvasir}:test", "--parity-count", "2", "--no-build", "--modelopt-python", "/nonexistent",
            "--tag", "tiny", "--out", str(tmp_path), "--note", "random weights"]
    assert main(argv) == 0
    (written,) = tmp_path.glob("int8_placement_*_tiny.json")  # the dated <kind>_<date>_<machine>_<tag> name
    report = json.loads(written.read_text())
    assert report["command"] == "python -m references.precision.int8_placement " + shlex.join(argv)
    assert len(report["machine"]["load_average"]) == 3 and report["image_size"] == 64
    export_row = report["rows"][0]
    assert export_row["graph"].startswith("export") and export_row["fusion"]["convs_int8"] > 0
    assert 0.0 < export_row["agreement_worst"] <= export_row["agreement_mean"] <= 1.0
    assert report["rows"][1]["graph"] == "modelopt" and "skipped" in report["rows"][1]
    md = written.with_suffix(".md").read_text()
    assert report["command"] in md and "> random weights" in md and "| modelopt | skipped:" in md
    named = argv + ["--name", "fixed"]  # a dated name changes by the minute; --name pins the stem
    assert main(named) == 0 and (tmp_path / "fixed.json").is_file()
    capsys.readouterr()
    before = (tmp_path / "fixed.json").read_bytes()
    assert main(named) == 2 and "pass --force" in capsys.readouterr().err
    assert (tmp_path / "fixed.json").read_bytes() == before
