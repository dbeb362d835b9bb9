"""python -m references.precision.spread: min / median / max of the bench's ratios over recorded runs."""

from __future__ import annotations

import json

import pytest

from bench.latency import LatencyRow
from bench.stats import summarize
from references.precision.spread import main


def _run(path, date, ort_vs_torch, int8):
    """A banet-bench result whose latency rows give these batch-1 ratios (its goals' display strings are
    deliberately wrong: the spread must come from the numbers, not from parsing "3.49x")."""
    def row(name, p50):  # the one JSON encoding of a measured row (three calls of p50 ms)
        return LatencyRow(name, "fp32", "cpu", 1, stats=summarize([p50 / 1e3] * 3)).to_dict()

    latency = [row("torch-fp32@cpu", 10.0 * ort_vs_torch), row("ort-fp32@cpu", 10.0)]
    if int8 is not None:
        latency.append(row("ort-int8@cpu", 10.0 / int8))
    goals = [{"goal": "ORT INT8 vs ORT FP32, CPU, batch 1 (p50 ratio), INT8 gate met", "achieved": "9.99x"},
             {"goal": "ORT FP32 vs PyTorch FP32 eager, CPU, batch 1 (p50 ratio)", "achieved": "9.99x"}]
    path.write_text(json.dumps({"command": f"banet-bench --tag {path.stem}", "machine": {"date": date},
                                "model": {"description": "tiny"}, "image_size": 128, "artifacts": "exp",
                                "reference": "torch-fp32@cpu", "latency": latency, "goals": goals}))
    return path


def test_spread_over_runs(tmp_path, capsys):
    files = [_run(tmp_path / "a.json", "2026-01-01T00:02", 3.49, 0.21),
             _run(tmp_path / "b.json", "2026-01-01T00:01", 35.31, None),
             _run(tmp_path / "c.json", "2026-01-01T00:03", 4.07, 0.59)]
    out = tmp_path / "results"
    assert main([*map(str, files), "--name", "s", "--results", str(out)]) == 0
    report = json.loads((out / "s.json").read_text())
    assert report["spread"]["ORT FP32 vs PyTorch FP32 eager"] == pytest.approx(
        {"runs": 3, "min": 3.49, "median": 4.07, "max": 35.31})
    assert report["spread"]["ORT INT8 vs ORT FP32"] == pytest.approx({"runs": 2, "min": 0.21, "median": 0.4, "max": 0.59})
    assert report["machine"]["load_average"] is not None and "libraries" in report["machine"]
    assert [r["file"] for r in report["runs"]] == [str(files[1]), str(files[0]), str(files[2])]  # by date
    md = (out / "s.md").read_text()
    assert "| ORT FP32 vs PyTorch FP32 eager | 3 | 3.49x | 4.07x | 35.31x |" in md and report["command"] in md
    with pytest.raises(SystemExit):
        main([str(files[0]), "--name", "s", "--results", str(out)])
    assert "s.json exists; pass --force" in capsys.readouterr().err


def test_a_file_that_is_not_a_bench_result_is_named(tmp_path, capsys):
    other = tmp_path / "soak.json"
    other.write_text(json.dumps({"soak": {}}))
    with pytest.raises(SystemExit):
        main([str(other), "--name", "s", "--results", str(tmp_path)])
    assert "soak.json: not a banet-bench result" in capsys.readouterr().err


def test_a_bench_result_with_a_broken_row_is_named(tmp_path, capsys):
    """A measured row without its statistics is refused with the file's name, not read as a missing ratio."""
    path = _run(tmp_path / "a.json", "2026-01-01T00:02", 3.49, 0.21)
    data = json.loads(path.read_text())
    del data["latency"][1]["p90_ms"]
    path.write_text(json.dumps(data))
    with pytest.raises(SystemExit):
        main([str(path), "--name", "s", "--results", str(tmp_path / "out")])
    assert "a.json: latency row ort-fp32@cpu batch 1: no p90_ms" in capsys.readouterr().err
