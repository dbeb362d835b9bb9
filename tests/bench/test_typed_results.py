"""Typed results: latency and parity rows have one JSON encoding (``to_dict``) and read back through their types
(``from_dict``), and later tools read a committed banet-bench file through them (bench.results.BenchRun)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.backend_parity import ParityRow
from bench.latency import LatencyRow, merge_repeats
from bench.results import BenchRun
from bench.stats import summarize

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
GATE_RUN = RESULTS / "2026-12-02T0725Z_amd-epyc-2c_tiny128-trained-int8cpu-r3.json"
"""The README's INT8 gate row: ORT FP32/INT8 latency over 3 repeats and the INT8 parity of a trained checkpoint."""


def _rows():
    a = LatencyRow("ort-fp32@cpu", "fp32", "cpu", 8, stats=summarize([0.010, 0.012, 0.011], 8), samples=[0.010, 0.012, 0.011],
                   peak_memory_mib=300.5, memory_kind="process peak RSS (VmHWM)", extra={"prepare_s": 0.2})
    b = LatencyRow("ort-fp32@cpu", "fp32", "cpu", 8, stats=summarize([0.020, 0.021, 0.022], 8), samples=[0.020, 0.021, 0.022],
                   peak_memory_mib=310.0, memory_kind="process peak RSS (VmHWM)", extra={"prepare_s": 0.2})
    skipped = LatencyRow("tensorrt-fp16@cuda", "fp16", "cuda", 8, skipped="no CUDA device")
    return merge_repeats([[a], [b]]) + [skipped]


def test_latency_rows_round_trip_through_their_json():
    for row in _rows():
        data = json.loads(json.dumps(row.to_dict()))
        again = LatencyRow.from_dict(data)
        assert again.to_dict() == data
        assert again.stats == row.stats and again.skipped == row.skipped
        assert again.samples == pytest.approx(row.samples, abs=1e-6)  # stored in ms to 3 decimals
    merged = LatencyRow.from_dict(_rows()[0].to_dict())
    assert merged.extra["repeat_p50_ms"] == pytest.approx([11.0, 21.0]) and merged.stats.count == 6


def test_broken_rows_are_refused_with_what_is_missing():
    data = _rows()[0].to_dict()
    del data["p99_ms"]
    with pytest.raises(ValueError, match="no p99_ms"):
        LatencyRow.from_dict(data)
    with pytest.raises(ValueError, match="neither skipped nor measured"):
        LatencyRow.from_dict({"backend": "x", "precision": "fp32", "device": "cpu", "batch_size": 1})
    with pytest.raises(ValueError, match="no mean_agreement"):
        ParityRow.from_dict({"backend": "x", "precision": "int8", "device": "cpu", "skipped": None, "passed": True})


def test_parity_rows_round_trip_through_their_json():
    from export.parity import DEFAULT_GATES, ParityResult

    result = ParityResult(artifact="ort-int8@cpu", precision="int8", images=4, mean_agreement=0.99,
                          worst_agreement=0.95, worst_image="a", max_abs_logit_diff=0.3, reference_ja=80.0,
                          artifact_ja=79.5, ja_loss=0.5, gate=DEFAULT_GATES["int8"], passed=True, reasons=("r",),
                          reference_foreground=0.2)

    class Backend:  # the three attributes a row takes from its backend
        name, precision, device = "ort-int8@cpu", "int8", "cpu"

    row = ParityRow.scored(Backend(), result.to_dict(), "int8")
    data = json.loads(json.dumps(row.to_dict()))
    assert data["mean_agreement"] == 0.99 and data["gate"]["min_agreement"] == DEFAULT_GATES["int8"].min_agreement
    assert ParityRow.from_dict(data) == row and ParityRow.from_dict(data).to_dict() == data
    skipped = ParityRow("triton-grpc", "fp32", "cpu", skipped="no --url")
    assert ParityRow.from_dict(skipped.to_dict()) == skipped


def test_a_committed_bench_result_reads_through_the_types():
    """The file the README cites for the CPU INT8 gate: every row reads and encodes back to what is stored, and
    the goals recomputed from the typed rows give the ratios the file's goals hold."""
    stored = json.loads(GATE_RUN.read_text())
    run = BenchRun.read(GATE_RUN)
    assert len(run.latency) == len(stored["latency"]) and len(run.parity) == len(stored["parity"]) == 2
    for row, data in zip(run.latency, stored["latency"]):
        assert row.to_dict() == data
    for row, data in zip(run.parity, stored["parity"]):
        assert {k: v for k, v in row.to_dict().items() if k in data} == data
    int8 = next(r for r in run.parity if r.backend == "ort-int8@cpu")
    assert int8.passed is True and int8.mean_agreement == pytest.approx(0.9847, abs=5e-5)
    # the goals recomputed from the typed rows are the ones the bench wrote (its display and verdict)
    # this file predates the model's `trained` field; its checkpoint is the trained runs/kvasir_tiny_128_lr1e-3
    recomputed = [g.to_dict() for g in run.goals(trained=True)]
    measured = [(g["goal"], g["achieved"], g["met"]) for g in stored["goals"] if g["achieved"] is not None]
    assert [(g["goal"], g["achieved"], g["met"]) for g in recomputed if g["achieved"] is not None] == measured
    assert [g["achieved"] for g in recomputed[:3]] == ["0.85x", "1.08x", "1.62x"]


def test_a_file_that_is_not_a_bench_result_is_named(tmp_path):
    soak = tmp_path / "soak.json"
    soak.write_bytes(next(RESULTS.glob("soak_*.json")).read_bytes())
    with pytest.raises(ValueError, match="soak.json: not a banet-bench result"):
        BenchRun.read(soak)


def test_a_run_that_does_not_record_trained_gets_no_gate_scored():
    """Files older than the model's ``trained`` field: the INT8 gate is not scored unless the caller says so."""
    run = BenchRun.read(GATE_RUN)
    assert "trained" not in run.model
    gates = [g.to_dict() for g in run.goals()][:2]
    assert all(g["met"] is not True and g["conditions"]["int8_gate"] is None and "not scored" in g["note"] for g in gates), gates
