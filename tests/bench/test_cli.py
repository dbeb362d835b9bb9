"""banet-bench end to end on real images and a real export: JSON, Markdown and PNGs written."""

from __future__ import annotations

import json

import numpy as np
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
    for (name, batch), row in lat.items():  # every ratio is the reference's p50 over the row's
        if row["skipped"] is None:
            assert row["speedup_vs_reference"] == pytest.approx(lat[("torch-fp32@cpu", batch)]["p50_ms"] / row["p50_ms"])
    # listed, never silently dropped: no FP16 artifact was exported, no TensorRT, no Triton URL
    assert "no onnx_fp16 in the manifest" in lat[("ort-fp16@cpu", 1)]["skipped"]
    # without a GPU: no engine can run; on a GPU host: no engine was exported (engine=False)
    assert "tensorrt" in lat[("tensorrt-fp16@cuda", 1)]["skipped"].lower()
    assert lat[("triton-grpc", 1)]["skipped"] == "no --url or --serve given"

    parity = {r["backend"]: r for r in result["parity"]}
    assert parity["ort-fp32@cpu"]["passed"] and parity["ort-fp32@cpu"]["images"] == 4
    assert parity["ort-fp32@cpu"]["max_abs_logit_diff"] < 1e-4
    # the INT8 row's figures, recomputed here from the artifact with ONNX Runtime and the checkpoint
    # with PyTorch on the same 4 images: per-image Jaccard of the two masks
    int8 = parity["ort-int8@cpu"]
    # ORT's CPU provider runs the INT8 artifact made for it (export/quantize_cpu.py), not the TensorRT one
    agreement = _int8_agreement(bench_checkpoint, bench_artifacts / "model_int8_cpu.onnx", data_root, result["image_size"])
    assert int8["images"] == 4
    assert int8["mean_agreement"] == pytest.approx(np.mean(list(agreement.values())), abs=1e-6)
    assert int8["worst_agreement"] == pytest.approx(min(agreement.values()), abs=1e-6)
    assert int8["worst_image"] == min(agreement, key=agreement.get)
    assert int8["passed"] == (not int8["reasons"])

    goals = {g["goal"].split(",")[0]: g for g in result["goals"]}
    ort_vs_torch = lat[("torch-fp32@cpu", 1)]["p50_ms"] / lat[("ort-fp32@cpu", 1)]["p50_ms"]
    assert goals["ORT FP32 vs PyTorch FP32 eager"]["achieved"] == f"{ort_vs_torch:.2f}x"
    assert goals["ORT FP32 vs PyTorch FP32 eager"]["met"] == (ort_vs_torch >= 1.0)
    int8_vs_fp32 = lat[("ort-fp32@cpu", 1)]["p50_ms"] / lat[("ort-int8@cpu", 1)]["p50_ms"]
    assert goals["ORT INT8 vs ORT FP32"]["achieved"] == f"{int8_vs_fp32:.2f}x"
    assert goals["ORT INT8 vs ORT FP32"]["met"] == (int8_vs_fp32 >= 1.5 and int8["passed"])

    md = json_path.with_suffix(".md").read_text()
    assert "## Skipped or failed" in md and "## Parity" in md
    for (name, batch), row in lat.items():  # the Markdown shows the JSON's numbers
        if row["skipped"] is None:
            assert f"| {name} | {batch} | {row['p50_ms']:.2f} | {row['p90_ms']:.2f} |" in md, (name, batch)
    assert f"| ort-int8@cpu | 4 | {int8['mean_agreement']:.4f} | {int8['worst_agreement']:.4f} |" in md
    for kind in ("latency", "examples"):
        png = json_path.with_name(json_path.stem + f"_{kind}.png")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(json_path) in capsys.readouterr().out


def _int8_agreement(checkpoint, onnx_path, data_root, size: int) -> dict[str, float]:
    from banet.checkpoint import model_from_checkpoint
    from banet.inference import predict_masks, torch_runner
    from banet.metrics import jaccard
    from export.onnxruntime import ort_runner
    from export.parity import load_parity_set

    data = load_parity_set(f"{data_root / 'kvasir-seg'}:test", count=4)
    want = predict_masks(torch_runner(model_from_checkpoint(checkpoint)[0]), data.images, size=size)
    got = predict_masks(ort_runner(onnx_path), data.images, size=size)
    return {name: jaccard(a, b) for name, a, b in zip(data.names, got, want)}


def test_repeats_pool_the_rows_and_give_the_int8_ratio_spread(bench_checkpoint, bench_artifacts, data_root, tmp_path):
    """--repeats 2: each row pools both repeats' calls and keeps each repeat's p50; the INT8 goals
    take the median of the per-repeat ratios and give their min-max; no parity: the gate is not claimed."""
    import statistics

    out = tmp_path / "results"
    argv = ["--checkpoint", str(bench_checkpoint), "--artifacts", str(bench_artifacts.parent),
            "--data", f"{data_root / 'kvasir-seg'}:test", "--batch-sizes", "1,8", "--iters", "3", "--warmup", "1",
            "--pool-images", "8", "--device", "cpu", "--backends", "ort-fp32@cpu", "ort-int8@cpu", "--no-parity",
            "--interleave", "--repeats", "2", "--out", str(out), "--tag", "r"]
    assert main(argv) == 0
    (json_path,) = out.glob("*_r.json")
    result = json.loads(json_path.read_text())
    assert result["machine"]["cpu_flags"] is not None
    lat = {(r["backend"], r["batch_size"]): r for r in result["latency"]}
    for key in [(b, n) for b in ("ort-fp32@cpu", "ort-int8@cpu", "torch-fp32@cpu") for n in (1, 8)]:
        row = lat[key]
        assert row["count"] == 6 and row["repeats"] == 2 and len(row["repeat_p50_ms"]) == 2 and len(row["samples_ms"]) == 6
        assert row["p50_ms"] == pytest.approx(float(np.median(row["samples_ms"])), abs=1e-3)
    goals = {g["goal"].split(",")[0]: g for g in result["goals"]}
    for batch, name in ((1, "ORT INT8 vs ORT FP32"), (8, "ORT INT8 vs ORT FP32 at batch 8")):
        fp32, int8 = lat[("ort-fp32@cpu", batch)]["repeat_p50_ms"], lat[("ort-int8@cpu", batch)]["repeat_p50_ms"]
        ratios = [a / b for a, b in zip(fp32, int8)]
        goal = goals[name]
        assert goal["ratios"] == pytest.approx(ratios)
        assert goal["achieved"] == f"{statistics.median(ratios):.2f}x"
        assert f"min-max {min(ratios):.2f}x-{max(ratios):.2f}x" in goal["note"]
        assert "not scored in this run" in goal["note"]
    assert "2 repeats of the whole measurement" in json_path.with_suffix(".md").read_text()


def test_bad_arguments_are_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(tmp_path / "nope.pt")])
    assert "nope.pt: file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--preset", "tiny", "--batch-sizes", "1,0"])
    assert "positive integers" in capsys.readouterr().err
