"""references.gpu_check: the data copy, the epoch plan, the whole check as its CPU rehearsal (--dry-run), and
the per-step budget and failure recording."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from PIL import Image

from banet.data.synthetic import SynthConfig, write_dataset
from references.gpu_check import DRY_RUN_BUDGET_S, STEPS, main, plan_epochs, prepare_data


@pytest.fixture(scope="module")
def copy(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu_check")
    src = write_dataset(root / "src", SynthConfig(count=12, size=64, seed=0))
    wide = Image.open(next((src / "images").iterdir())).resize((96, 48))  # one non-square image
    name = next((src / "images").iterdir()).stem
    wide.save(src / "images" / f"{name}.png")
    Image.open(src / "masks" / f"{name}.png").resize((96, 48), Image.NEAREST).save(src / "masks" / f"{name}.png")
    info = prepare_data(src, root / "copy", size=40)
    return src, root / "copy", info, name


def test_prepare_data_keeps_pairs_splits_and_aspect(copy):
    src, out, info, wide = copy
    assert info["pairs"] == 12 and (out / "splits.csv").read_text() == (src / "splits.csv").read_text()
    sizes = {p.stem: Image.open(p).size for p in (out / "images").iterdir()}
    assert len(sizes) == 12 and sizes[wide] == (80, 40) and all(min(s) == 40 for s in sizes.values())
    mask = np.asarray(Image.open(out / "masks" / f"{wide}.png"))
    assert mask.shape == (40, 80) and set(np.unique(mask)) <= {0, 255} and mask.any()
    with pytest.raises(FileExistsError, match="--force"):
        prepare_data(src, out, size=40)


def test_epoch_plan_cuts_the_recipe_to_the_time_budget():
    rows = [{"mode": "eager", "batch_size": 8, "images_per_s": 400.0, "warmup_s": 5.0},
            {"mode": "compile", "batch_size": 8, "images_per_s": 800.0, "warmup_s": 60.0},
            {"mode": "compile", "batch_size": 64, "skipped": "failed"}]
    epochs, mode, why = plan_epochs(rows, minutes=10, train_images=800, batch_size=8, recipe_epochs=150)
    assert (epochs, mode) == (150, "compile") and "150 epochs fit" in why  # 1 s per epoch
    epochs, mode, _ = plan_epochs(rows[:1], minutes=10, train_images=800, batch_size=8, recipe_epochs=150)
    assert (epochs, mode) == (150, "eager")  # 2 s per epoch: 267 would fit, the recipe asks for 150
    epochs, _, why = plan_epochs(rows[:1], minutes=2, train_images=800, batch_size=8, recipe_epochs=150)
    assert epochs == int((0.9 * 120 - 5.0) / 2.0) and "cut from 150" in why
    assert plan_epochs([], minutes=10, train_images=800, batch_size=8, recipe_epochs=150)[0] == 150


def test_dry_run_runs_every_step_and_writes_the_results(copy, tmp_path, capsys):
    """The CPU rehearsal: every step in its own process, the results and each step's log written."""
    _, data, _, _ = copy
    out = tmp_path / "out"
    args = ["run", "--data", str(data), "--out", str(out), "--dry-run", "--work", str(tmp_path / "work"), "--name", "t"]
    assert main(args) == 0, (out / "t.md").read_text()
    result = json.loads((out / "t.json").read_text())
    assert result["dry_run"] and result["machine"]["cpu"] and "gpu" in result["machine"]
    assert list(result["steps"]) == list(STEPS) and all(s["status"] == "ok" for s in result["steps"].values())
    assert all(0 < s["seconds"] <= s["budget_s"] == DRY_RUN_BUDGET_S for s in result["steps"].values())
    assert all((out / "t_logs" / f"{name}.log").is_file() for name in STEPS)
    env = result["environment"]
    assert env["device"] == "cpu" and env["torch"] and env["matmul"]["ok"] and env["modules"]["onnxruntime"]
    assert "CPUExecutionProvider" in env["onnxruntime_providers"]
    eager, compiled = result["throughput"]
    assert eager["mode"] == "eager" and eager["images_per_s"] > 0
    assert "CUDA only" in compiled["skipped"]
    train = result["train"]
    assert train["epochs"] == 1 and 0.0 <= train["test_JA"] <= 1.0 and train["config"]["recipe"] == "official"
    assert train["config"]["dice_weight"] == 1.0 and train["config"]["augment"] == "official"
    bench = result["bench"]
    assert bench["model"].startswith("the train step's best checkpoint")  # the model trained in the step before
    rows = {(r["backend"], r["batch_size"]): r for r in bench["rows"]}
    assert rows[("torch-fp32@cpu", 1)]["p50_ms"] > 0 and rows[("torch-fp32-cl@cpu", 2)]["p50_ms"] > 0
    assert "no CUDA device" in rows[("torch-fp16-cl-cudagraph@cuda", 1)]["skipped"]
    parity = result["parity"]
    assert {g["name"] for g in parity["export_gates"]} >= {"onnx_fp32", "onnx_fp16"}
    scored = {r["backend"]: r for r in parity["rows"]}
    assert "torch-fp32@cpu" not in scored and parity["reference"] == "torch-fp32@cpu"
    # ORT's FP32 graph of the same weights on the same images: the same masks, the fp32 gate passed
    assert scored["ort-fp32@cpu"]["passed"] and scored["ort-fp32@cpu"]["mean_agreement"] > 0.999
    assert parity["images"] == 2  # the copy's test split (of 12 pairs); a dry run asks for up to 4
    assert scored["ort-fp16@cpu"]["skipped"] is None and scored["ort-fp16@cpu"]["images"] == 2
    assert "no CUDA device" in scored["torch-fp16-cl-compile@cuda"]["skipped"]
    assert "CUDAExecutionProvider" in scored["ort-fp32@cuda"]["skipped"]
    trt = {r["backend"]: r for r in result["tensorrt"]["rows"]}
    assert trt["tensorrt"]["status"] == trt["torch_tensorrt"]["status"] == "absent"
    assert "dry run on the CPU" in trt["tensorrt"]["reason"]
    assert not result["goals"]["training_images_per_s"]["met"]
    md = (out / "t.md").read_text()
    assert "dry run (CPU rehearsal, not a measurement)" in md and "| torch-fp32@cpu | 1 |" in md
    assert "| parity | ok |" in md and "- tensorrt: absent: dry run on the CPU" in md
    assert main(args) == 2 and "--force" in capsys.readouterr().err  # never replaced silently


def test_a_failed_or_overrunning_step_is_recorded_and_the_next_runs(copy, tmp_path, monkeypatch):
    """A step over its budget is stopped (``timeout``), one that raises is ``failed`` with its error and
    log, the steps after them run, and the results file is rewritten after every step."""
    import references.gpu_check as gpu_check

    _, data, _, _ = copy
    out = tmp_path / "out"
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    snapshots = []
    write = gpu_check._write

    def spy(result, files):
        write(result, files)
        snapshots.append({k: v["status"] for k, v in json.loads(files.paths["json"].read_text())["steps"].items()})

    monkeypatch.setattr(gpu_check, "_write", spy)
    args = ["run", "--data", str(data), "--out", str(out), "--dry-run", "--work", str(tmp_path / "work"),
            "--name", "t", "--steps", "environment,throughput,bench,tensorrt", "--checkpoint", str(bad),
            "--budget", "throughput=0.5"]
    started = time.monotonic()
    assert main(args) == 1
    assert time.monotonic() - started < 120  # the overrunning step was stopped, not waited for
    result = json.loads((out / "t.json").read_text())
    steps = result["steps"]
    assert {k: v["status"] for k, v in steps.items()} == {
        "environment": "ok", "throughput": "timeout", "bench": "failed", "tensorrt": "ok"}
    assert 0.5 <= steps["throughput"]["seconds"] < 30 and steps["throughput"]["budget_s"] == 0.5
    assert "stopped at its budget of 0.5 s" in steps["throughput"]["error"]
    assert "CheckpointError" in steps["bench"]["error"] and str(bad) in steps["bench"]["error"]
    assert "run_bench_rows" in steps["bench"]["log_tail"]  # the end of its traceback, from the step's log
    assert set(result["errors"]) == {"throughput", "bench"}
    assert result["tensorrt"]["rows"] and result["environment"]["matmul"]["ok"]
    # written before the first step and after each one, each time with the steps done so far
    assert snapshots == [{}, {"environment": "ok"}, {"environment": "ok", "throughput": "timeout"},
                         {"environment": "ok", "throughput": "timeout", "bench": "failed"},
                         {"environment": "ok", "throughput": "timeout", "bench": "failed", "tensorrt": "ok"}]


@pytest.mark.needs_no_cuda
def test_the_full_check_needs_cuda(copy, tmp_path, capsys):
    _, data, _, _ = copy
    assert main(["run", "--data", str(data), "--out", str(tmp_path / "out"), "--name", "u"]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_bad_budget_is_refused(copy, tmp_path, capsys):
    _, data, _, _ = copy
    for budget, message in (("train=0", "must be > 0"), ("warp=5", "unknown step 'warp'"), ("train=x", "a number")):
        with pytest.raises(SystemExit):
            main(["run", "--data", str(data), "--out", str(tmp_path), "--dry-run", "--budget", budget])
        assert message in capsys.readouterr().err


def test_tensorrt_step_on_a_gpu_host_without_tensorrt_records_absent(monkeypatch, tmp_path):
    """The H200 used for checks has neither tensorrt nor torch_tensorrt: the step says so and touches
    no GPU (the device is a stand-in that only answers its type)."""
    import importlib.util
    from types import SimpleNamespace

    from references.gpu_check import DRY_RUN, step_tensorrt

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("tensorrt", "torch_tensorrt") else real(name, *a))
    reported = []
    result = step_tensorrt({"dry_run": False, "work": str(tmp_path)}, DRY_RUN, SimpleNamespace(type="cuda"),
                           reported.append)
    rows = {r["backend"]: r for r in result["rows"]}
    assert rows["tensorrt"] == {"backend": "tensorrt", "status": "absent",
                                "reason": "the data-center tensorrt Python package is not installed"}
    assert rows["torch_tensorrt"]["status"] == "absent" and "not installed" in rows["torch_tensorrt"]["reason"]
    assert reported and reported[-1] is result  # reported before returning
