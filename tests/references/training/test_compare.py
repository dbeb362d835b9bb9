"""banet-compare: two networks through train -> evaluate -> export -> interleaved ORT latency, on a
synthetic set (tiny configurations, 64 px, one training step each), and its results files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from banet.data.synthetic import SynthConfig, write_dataset
from banet.evaluate import evaluate
from banet.metrics import METRIC_NAMES
from references.training.compare import ENTRY_FILE, entries_for
from references.training.compare import main as compare_main

ARGS = ["--arch", "unet", "banet", "--ablation", "--size", "64", "--epochs", "1", "--max-steps", "1",
        "--batch-size", "4", "--workers", "1", "--calib-count", "8", "--parity-count", "3", "--latency-images", "3",
        "--latency-rounds", "3", "--latency-repeats", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    data = write_dataset(root / "data", SynthConfig(count=16, size=72, seed=1))
    argv = ["--data", str(data), "--out", str(root / "out"), "--results", str(root / "results"), "--name", "cmp", *ARGS]
    assert compare_main(argv) == 0
    return root, data, argv


def test_results_hold_table_one_columns_size_latency_and_agreement(compared):
    root, data, _ = compared
    result = json.loads((root / "results" / "cmp.json").read_text())
    assert [e["label"] for e in result["entries"]] == ["unet", "banet"]
    assert result["command"].startswith("banet-compare --data") and result["machine"]["load_average"] is not None
    for entry in result["entries"]:
        # the scores are the checkpoint's own: evaluating best.pt again gives the same numbers
        again = evaluate(entry["training"]["best"], data, "test")["model"]["mean"]
        assert entry["metrics"] == pytest.approx(again) and set(METRIC_NAMES) <= set(entry["metrics"])
        assert 0 < entry["params"] and 0 < entry["gflops"]
        assert entry["training"]["steps"] == 1
        # the artifact ONNX Runtime's CPU provider runs (export.pipeline.ARTIFACT_BY_RUNTIME): for INT8 the CPU
        # graph, not the TensorRT one; its agreement is the export's parity of that same file, over the images asked
        assert entry["artifacts"]["int8"]["path"].endswith("model_int8_cpu.onnx")
        manifest = json.loads((Path(entry["artifacts"]["fp32"]["path"]).parent / "manifest.json").read_text())
        by_path = {a["path"]: a for a in manifest["artifacts"]}
        for precision in ("fp32", "fp16", "int8"):
            art = entry["artifacts"][precision]
            parity = by_path[Path(art["path"]).name]["parity"]
            assert art["mean_agreement"] == parity["mean_agreement"] and art["images"] == 3, precision
            assert art["worst_agreement"] == parity["worst_agreement"] <= art["mean_agreement"], precision
            assert art["gate"] == by_path[Path(art["path"]).name]["gate"], precision  # the export's verdict
        assert entry["artifacts"]["fp32"]["mean_agreement"] == pytest.approx(1.0, abs=1e-6)  # FP32 ONNX = PyTorch
        trt = entry["tensorrt_int8"]  # the TensorRT INT8 graph: not timed, but its gate is reported
        assert trt["name"] == "onnx_int8" and trt["gate"] in ("pass", "fail") and trt["images"] == 3
        assert trt["mean_agreement"] == by_path["model_int8.onnx"]["parity"]["mean_agreement"]
        ratios = result["latency"]["ratios"][entry["label"]]
        for key in ("fp16_vs_fp32", "int8_vs_fp32", "fp32_vs_reference"):
            r = ratios[key]
            assert r["n"] == 2 and 0 < r["min"] <= r["median"] <= r["max"], key
    # the ratios are the recorded p50s of each repeat divided within that repeat: recomputed independently
    # from the repeats for U-Net against BA-Net (two different networks' times, not BA-Net's with itself)
    reps = result["latency"]["repeats"]
    for key, (num, den) in {"fp32_vs_reference": ("unet/fp32", "banet/fp32"),
                            "int8_vs_fp32": ("unet/int8", "unet/fp32")}.items():
        want = sorted(rep[num] / rep[den] for rep in reps)
        got = result["latency"]["ratios"]["unet"][key]
        assert got["min"] == pytest.approx(want[0]) and got["max"] == pytest.approx(want[-1]), key
        assert got["median"] == pytest.approx(float(np.median(want))), key
    unet, banet = result["entries"]
    assert unet["params"] != banet["params"]  # two different networks were built
    # every repeat timed all six artifacts
    assert all(len(rep) == 6 for rep in result["latency"]["repeats"])
    md = (root / "results" / "cmp.md").read_text()
    assert "not the paper's numbers" in md and "| unet | full |" in md and "cmp_comparison.png" in md
    for entry in result["entries"]:  # each agreement cell carries the export gate's verdict beside it
        fp16, int8, trt = entry["artifacts"]["fp16"], entry["artifacts"]["int8"], entry["tensorrt_int8"]
        row = next(line for line in md.splitlines() if line.startswith(f"| {entry['arch']} | full | 0 |")
                   and f"{fp16['mean_agreement']:.4f}" in line)
        assert (f"{fp16['mean_agreement']:.4f} / {fp16['worst_agreement']:.3f}, {fp16['gate']} | "
                f"{int8['mean_agreement']:.4f} / {int8['worst_agreement']:.3f}, {int8['gate']} | "
                f"{trt['mean_agreement']:.4f} / {trt['worst_agreement']:.3f}, {trt['gate']} ({trt['placement']}) |") in row
    for plot in ("comparison", "curves"):  # the one results writer's STEM_<plot>.png
        assert (root / "results" / f"cmp_{plot}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_existing_results_and_entries_are_never_replaced_silently(compared, capsys):
    root, data, argv = compared
    before = (root / "results" / "cmp.json").read_bytes()
    assert compare_main(argv) == 2
    assert "exists" in capsys.readouterr().err and (root / "results" / "cmp.json").read_bytes() == before
    other = [a if a != "cmp" else "cmp2" for a in argv]
    assert compare_main(other) == 2  # finished entries in --out: --reuse or --force
    assert "--resume" in capsys.readouterr().err
    stamp = (root / "out" / "unet" / ENTRY_FILE).stat().st_mtime_ns
    assert compare_main(other + ["--reuse"]) == 0  # takes them: only the latency block runs again
    assert (root / "out" / "unet" / ENTRY_FILE).stat().st_mtime_ns == stamp
    again = json.loads((root / "results" / "cmp2.json").read_text())
    first = json.loads(before)
    assert [e["metrics"] for e in again["entries"]] == [e["metrics"] for e in first["entries"]]
    changed = [a if a != "64" else "96" for a in other]  # another size: reuse is refused
    assert compare_main(changed + ["--reuse", "--force"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_bad_options_are_refused_before_any_training(tmp_path, capsys):
    argv = ["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "out"), "--results", str(tmp_path)]
    assert compare_main(argv + ["--calib-count", "4"]) == 2
    assert "at least 8" in capsys.readouterr().err
    assert compare_main(argv + ["--latency-repeats", "0"]) == 2
    assert not (tmp_path / "out").exists()


def test_entries_and_bad_names():
    assert [e.label for e in entries_for(["unet", "banet"], ["no_pee", "full"])] == ["unet", "banet", "banet-no_pee"]
    assert [e.label for e in entries_for([], ["full", "baseline"])] == ["banet", "banet-baseline"]
    with pytest.raises(ValueError, match="unknown architecture"):
        entries_for(["resnet"], [])
    with pytest.raises(ValueError, match="unknown ablation"):
        entries_for(["unet"], ["no_gates"])


def test_a_killed_run_continues_from_its_last_checkpoint_and_finished_runs_are_not_repeated(compared, capsys):
    root, data, argv = compared
    run = root / "out" / "banet" / "run"
    (root / "out" / "banet" / ENTRY_FILE).unlink()  # killed after training, before its record was written
    trained = (run / "last.pt").stat().st_mtime_ns
    unet_record = (root / "out" / "unet" / ENTRY_FILE).stat().st_mtime_ns
    other = [a if a != "cmp" else "cmp3" for a in argv]
    assert compare_main(other + ["--resume"]) == 0
    assert (run / "last.pt").stat().st_mtime_ns == trained  # continued, not trained again from scratch
    assert (root / "out" / "unet" / ENTRY_FILE).stat().st_mtime_ns == unet_record  # finished: taken as it is
    record = json.loads((root / "out" / "banet" / ENTRY_FILE).read_text())
    assert record["training"]["steps"] == 1 and record["row"] == "banet" and record["seed"] == 0
    assert set(METRIC_NAMES) <= set(record["metrics_paper"]) and record["paper_score_size"] == 256
    progress = (root / "out" / "progress.md").read_text()
    assert "| banet |" in progress and "| unet |" in progress
    (root / "out" / "banet" / ENTRY_FILE).unlink()
    changed = [a if a != "cmp" else "cmp4" for a in argv if a != "unet"] + ["--resume", "--lr", "0.5"]
    assert compare_main(changed) == 2  # an unfinished run of other settings is not continued silently
    assert "other settings (lr)" in capsys.readouterr().err


def test_extra_seeds_add_runs_of_the_named_rows():
    entries = entries_for(["banet", "unet"], ["baseline"], extra_seeds=[1, 2], seed_rows=["banet", "banet-baseline"])
    assert [e.label for e in entries] == ["banet", "unet", "banet-baseline", "banet-seed1", "banet-baseline-seed1",
                                          "banet-seed2", "banet-baseline-seed2"]
    assert {e.row for e in entries} == {"banet", "unet", "banet-baseline"}
    with pytest.raises(ValueError, match="not rows"):
        entries_for(["banet"], [], extra_seeds=[1], seed_rows=["cenet"])


def test_record_counts_the_whole_run_not_only_up_to_the_best_epoch(tmp_path, monkeypatch):
    """A run that stops early after its best epoch: the record's epochs and curve are the whole run's
    (last.pt), its best epoch the one best.pt holds."""
    import banet.train as train
    from references.training.compare import Entry, Settings, run_entry

    data = write_dataset(tmp_path / "data", SynthConfig(count=16, size=72, seed=3))
    real, scores = train.validate, iter([0.5, 0.4, 0.3])

    def scripted(*args, **kwargs):
        result = real(*args, **kwargs)
        result["mean"] = {**result["mean"], "JA": next(scores)}
        return result

    monkeypatch.setattr(train, "validate", scripted)
    settings = Settings(data=str(data), out=str(tmp_path / "out"), size=64, epochs=5, patience=1, max_steps=None,
                        batch_size=4, workers=1, device="cpu", calib_count=8, parity_count=3)
    record = run_entry(Entry("banet"), settings, say=lambda *a: None)
    t = record["training"]
    assert t["epochs"] == 2 and t["best_epoch"] == 1 and t["stopped_early"] is True
    assert [h["epoch"] for h in t["val_history"]] == [1, 2]
