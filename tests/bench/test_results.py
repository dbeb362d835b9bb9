"""Result files: nothing overwritten silently; skipped backends and their reasons in the Markdown."""

from __future__ import annotations

import json

import pytest

from banet.machine import machine_info, machine_slug
from bench.results import markdown, result_stem, write_results


def _result():
    return {
        "tag": "unit", "command": "banet-bench --preset tiny", "machine": machine_info(),
        "latency": [
            {"backend": "torch-fp32@cpu", "precision": "fp32", "device": "cpu", "batch_size": 1, "skipped": None,
             "count": 3, "p50_ms": 2.0, "p90_ms": 2.5, "p99_ms": 3.0, "mean_ms": 2.2, "throughput": 450.0,
             "peak_memory_mib": 300.0, "memory_kind": "process peak RSS (VmHWM)", "speedup_vs_reference": 1.0},
            {"backend": "tensorrt-fp16@cuda", "precision": "fp16", "device": "cuda", "batch_size": 1,
             "skipped": "the tensorrt Python package is not installed"},
        ],
        "load": [{"tool": "perf_analyzer", "concurrency": 1, "throughput": 10.0, "p50_ms": 90.0, "p90_ms": 95.0,
                  "p99_ms": 99.0, "count": 30, "skipped": None},
                 {"tool": "perf_analyzer", "concurrency": 2, "throughput": 15.0, "p50_ms": 120.0, "p90_ms": 125.0,
                  "p99_ms": 130.0, "count": 45, "skipped": None}],
    }


def test_stem_has_date_and_machine():
    info = machine_info()
    stem = result_stem(info, "x")
    date = info["date"][:16].replace(":", "").replace("+", "") + "Z"
    assert stem == f"{date}_{machine_slug(info)}_x"


def test_machine_slug_names_the_gpu_or_the_cpu_and_its_cores():
    # fixed records, not this host: a CPU machine is named by its model and cores, a GPU one by the GPU
    cpu = {"cpu": "AMD EPYC Processor", "cores": 2, "gpu": None}  # as /proc/cpuinfo names the dev machine
    assert machine_slug(cpu) == "amd-epyc-2c"
    assert machine_slug(dict(cpu, cpu="Intel(R) Xeon(R) CPU @ 2.20GHz")) == "intel-xeon-2c"
    assert machine_slug(dict(cpu, gpu="NVIDIA H200")) == "nvidia-h200"


def test_markdown_lists_skips_with_reasons():
    md = markdown(_result())
    assert "| torch-fp32@cpu | 1 | 2.00 | 2.50 | 3.00 |" in md
    assert "| tensorrt-fp16@cuda | the tensorrt Python package is not installed |" in md
    assert "| perf_analyzer | 1 | 10.00 |" in md


def test_write_refuses_to_overwrite(tmp_path):
    paths = write_results(_result(), tmp_path, stem="s")
    assert json.loads(paths["json"].read_text())["plots"]["load"].endswith("s_load.png")
    assert paths["load"].read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(FileExistsError, match="--force"):
        write_results(_result(), tmp_path, stem="s")
    assert write_results(_result(), tmp_path, stem="s", force=True)["md"].is_file()


def test_goals_from_rows_of_the_same_run():
    from bench.goals import evaluate

    def row(name, p50):
        return {"backend": name, "batch_size": 1, "device": "cpu", "p50_ms": p50, "throughput": 1000 / p50,
                "skipped": None}

    latency = [row("torch-fp32@cpu", 30.0), row("ort-fp32@cpu-t2", 20.0), row("ort-int8@cpu-t2", 10.0)]
    parity = [{"backend": "ort-int8@cpu-t2", "passed": False, "skipped": None}]
    found = evaluate(latency, parity, reference="torch-fp32@cpu")
    goals = {g["goal"][:12]: g for g in found}
    b1, b8 = found[0], found[1]
    assert "batch 1" in b1["goal"] and b1["target"] == ">= 1.5x"
    assert b1["achieved"] == "2.00x" and b1["met"] is False and "INT8 gate: FAIL" in b1["note"]  # gate failed
    assert "batch 8" in b8["goal"] and b8["target"] == ">= 1.8x" and b8["achieved"] is None  # no batch-8 rows
    assert evaluate(latency, [dict(parity[0], passed=True)], reference="torch-fp32@cpu")[0]["met"] is True
    no_parity = evaluate(latency, [], reference="torch-fp32@cpu")[0]
    assert no_parity["met"] is None and "not scored in this run" in no_parity["note"]
    assert goals["ORT FP32 vs "]["achieved"] == "1.50x" and goals["ORT FP32 vs "]["met"] is True
    assert all(g["met"] is None and "no CUDA GPU" in g["note"] for g in goals.values() if "TensorRT" in g["goal"])


def test_markdown_does_not_claim_one_count_when_rows_differ():
    # --row-budget cuts iters on slow rows: the summary must not state the first row's count for all rows
    result = _result()
    cut = dict(result["latency"][0], backend="torch-bf16@cpu", count=3, iters_cut_from=20)
    result["latency"] = [dict(result["latency"][0], count=20), cut]
    md = markdown(result)
    assert "excluded; 20 timed calls per row" not in md
    assert "3-20 timed calls per row" in md


def test_int8_goal_is_the_median_of_the_repeats_ratios():
    from bench.goals import evaluate

    def row(name, batch, p50s):
        return {"backend": name, "batch_size": batch, "device": "cpu", "p50_ms": sorted(p50s)[1], "skipped": None,
                "repeat_p50_ms": p50s, "throughput": 1.0}

    # ratios per repeat at batch 8: 2.0, 1.7, 1.9 -> median 1.9 (>= 1.8), not all >= 1.8
    latency = [row("ort-fp32@cpu", 8, [200.0, 170.0, 190.0]), row("ort-int8@cpu", 8, [100.0, 100.0, 100.0])]
    passed = [{"backend": "ort-int8@cpu", "passed": True, "skipped": None}]
    goal = evaluate(latency, passed, reference="torch-fp32@cpu")[1]
    assert goal["ratios"] == pytest.approx([2.0, 1.7, 1.9]) and goal["achieved"] == "1.90x" and goal["met"] is True
    assert "median of 3 repeats, min-max 1.70x-2.00x (not all >= 1.8x)" in goal["note"]


def test_merge_repeats_pools_calls_and_keeps_each_repeats_p50():
    from bench.latency import LatencyRow, merge_repeats
    from bench.stats import summarize

    def rows(seconds, skipped=None):
        a = LatencyRow("a", "fp32", "cpu", 1, stats=summarize(seconds), samples=list(seconds))
        b = LatencyRow("b", "fp32", "cpu", 1, skipped=skipped) if skipped else \
            LatencyRow("b", "fp32", "cpu", 1, stats=summarize(seconds), samples=list(seconds))
        return [a, b]

    merged = merge_repeats([rows([0.1, 0.3, 0.2]), rows([0.5, 0.4, 0.6], skipped="failed: boom")])
    a, b = merged
    assert a.stats.count == 6 and a.stats.p50_ms == pytest.approx(350.0)
    assert a.extra["repeat_p50_ms"] == pytest.approx([200.0, 500.0]) and a.extra["repeats"] == 2
    assert b.stats is None and b.skipped == "failed: boom"


@pytest.mark.parametrize("parity, trained, why", [
    ([], True, "no parity in the run"),
    ([{"backend": "ort-int8@cpu", "passed": True, "skipped": None}], False, "random weights"),
    ([{"backend": "ort-int8@cpu", "passed": None, "skipped": "no INT8 artifact"}], True, "gate row skipped"),
])
def test_a_goal_row_cannot_read_pass_with_a_condition_unmeasured(parity, trained, why):
    """The speed condition is met (2.0x >= 1.5x) but the gate was not measured in this run: no PASS."""
    from bench.goals import evaluate

    latency = [{"backend": "ort-fp32@cpu", "batch_size": 1, "device": "cpu", "p50_ms": 20.0, "throughput": 50.0,
                "skipped": None},
               {"backend": "ort-int8@cpu", "batch_size": 1, "device": "cpu", "p50_ms": 10.0, "throughput": 100.0,
                "skipped": None}]
    goals = evaluate(latency, parity, reference="torch-fp32@cpu", trained=trained)
    b1 = goals[0]
    assert b1["achieved"] == "2.00x" and b1["conditions"] == {"speed": True, "int8_gate": None}, why
    assert b1["met"] is None, why
    md = markdown({**_result(), "goals": goals})
    row = next(line for line in md.splitlines() if line.startswith(f"| {b1['goal']} |"))
    assert "PASS" not in row.split("|")[4], row  # the "met" cell
    # every goal row of the run: PASS only where every condition it names was measured and holds
    for g in goals:
        assert (g["met"] is True) == (bool(g["conditions"]) and all(v is True for v in g["conditions"].values()))


def test_write_refuses_a_file_another_run_wrote_since_the_claim(tmp_path):
    from bench.results import ResultFiles

    files = ResultFiles(tmp_path, "same")  # claimed: nothing there yet
    (tmp_path / "same.json").write_text('{"other": "run"}')  # another run of the same name finished meanwhile
    with pytest.raises(FileExistsError, match="written by another run"):
        files.write({"x": 1}, "# x\n")
    assert (tmp_path / "same.json").read_text() == '{"other": "run"}'
    ResultFiles(tmp_path, "same2", force=True).write({"x": 1}, "# x\n")  # --force still replaces
    own = ResultFiles(tmp_path, "own")
    own.write({"step": 1}, "# 1\n")
    own.write({"step": 2}, "# 2\n")  # a command that rewrites its own file after every step (gpu_check)
    assert '"step": 2' in (tmp_path / "own.json").read_text()
