"""banet-bench end to end on real images and a real export: JSON, Markdown and PNGs written."""

from __future__ import annotations

import json

import pytest

from bench.cli import main

pytestmark = pytest.mark.needs_data


def test_bench_writes_json_markdown_and_plots(bench_checkpoint, bench_artifacts, data_root, tmp_path, capsys):
    out = tmp_path / "results"
    argv = ["--checkpoint", str(bench_checkpoint), "--artifacts", str(bench_artifacts.parent),
            "--data", f"{data_root / 'kvasir-seg'}:test", "--batch-sizes", "1,2", "--iters", "3",
            "--warmup", "1", "--pool-images", "4", "--parity-images", "4", "--device", "cpu",
            "--backends", "torch-fp32@", "ort-", "tensorrt-", "triton", "--out", str(out), "--tag", "t"]
    assert main(argv) == 0
    (json_path,) = out.glob("*_t.json")
    result = json.loads(json_path.read_text())
    assert result["command"].startswith("banet-bench --checkpoint")
    assert result["machine"]["cores"] >= 1 and result["machine"]["cpu"]
    assert result["image_size"] == 64 and result["reference"] == "torch-fp32@cpu"

    lat = {(r["backend"], r["batch_size"]): r for r in result["latency"]}
    for name in ("torch-fp32@cpu", "ort-fp32@cpu", "ort-int8@cpu"):
        for batch in (1, 2):
            row = lat[(name, batch)]
            assert row["skipped"] is None and row["count"] == 3
            assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] <= row["max_ms"]
    assert lat[("torch-fp32@cpu", 1)]["speedup_vs_reference"] == pytest.approx(1.0)
    # listed, never silently dropped: no FP16 artifact was exported, no TensorRT, no Triton URL
    assert "no fp16 ONNX artifact" in lat[("ort-fp16@cpu", 1)]["skipped"]
    assert "tensorrt" in lat[("tensorrt-fp16@cuda", 1)]["skipped"]
    assert lat[("triton-grpc", 1)]["skipped"] == "no --url or --serve given"

    parity = {r["backend"]: r for r in result["parity"]}
    assert parity["ort-fp32@cpu"]["passed"] and parity["ort-fp32@cpu"]["images"] == 4
    assert "passed" in parity["ort-int8@cpu"]
    goals = {g["goal"]: g for g in result["goals"]}
    int8_goal = next(g for name, g in goals.items() if name.startswith("ORT INT8"))
    assert int8_goal["achieved"].endswith("x")

    md = json_path.with_suffix(".md").read_text()
    assert "| ort-int8@cpu | 1 |" in md and "## Skipped or failed" in md and "## Parity" in md
    for kind in ("latency", "examples"):
        png = json_path.with_name(json_path.stem + f"_{kind}.png")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(json_path) in capsys.readouterr().out


def test_bad_arguments_are_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(tmp_path / "nope.pt")])
    assert "nope.pt: file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--preset", "tiny", "--batch-sizes", "1,0"])
    assert "positive integers" in capsys.readouterr().err
