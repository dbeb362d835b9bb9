"""perf_analyzer support: input data made of real encoded images, its CSV, a clear reason when absent."""

from __future__ import annotations

import base64
import json

import pytest

from bench.perf_analyzer import PerfAnalyzerUnavailable, parse_csv, request_count, setup, write_input_data


@pytest.mark.needs_data
def test_input_data_carries_the_real_files(kvasir_test_pairs, tmp_path):
    raw = [img.read_bytes() for img, _ in kvasir_test_pairs[:3]]
    path = write_input_data(raw, tmp_path / "input.json", "IMAGE_BYTES")
    data = json.loads(path.read_text())["data"]
    assert len(data) == 3
    sent = [base64.b64decode(d["IMAGE_BYTES"]["content"]["b64"]) for d in data]
    # Triton's BYTES wire format: uint32 little-endian length, then the file's bytes
    assert [int.from_bytes(s[:4], "little") for s in sent] == [len(r) for r in raw]
    assert [s[4:] for s in sent] == raw
    assert all(d["IMAGE_BYTES"]["shape"] == [1] for d in data)
    with pytest.raises(ValueError, match="no encoded images"):
        write_input_data([], tmp_path / "empty.json", "IMAGE_BYTES")


def test_parse_csv_without_avg_column_sums_the_parts(tmp_path):
    # perf_analyzer 2.40 writes no "Avg latency" column: the mean is the sum of its components
    csv_path = tmp_path / "pa.csv"
    csv_path.write_text(
        "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,"
        "Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,"
        "p50 latency,p90 latency,p95 latency,p99 latency\n"
        "1,10.3833,14,8494,2,241,85388,2103,5,89407,140008,144142,158647\n")
    row = parse_csv(csv_path)
    assert row["mean_ms"] == pytest.approx(96.247) and row["p99_ms"] == pytest.approx(158.647)
    assert row["server_compute_infer_ms"] == pytest.approx(85.388)
    assert request_count("  Client: \n    Request count: 75\n    Throughput: 10.4 infer/sec") == 75


def test_parse_csv_converts_microseconds(tmp_path):
    csv_path = tmp_path / "pa.csv"
    csv_path.write_text(
        "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,"
        "Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,"
        "p50 latency,p90 latency,p95 latency,p99 latency,Avg latency,request/response,response wait\n"
        "4,123.5,10,200,30,40,5000,20,5,31000,35500,36000,41250,32000,0,0\n")
    row = parse_csv(csv_path)
    assert {k: row[k] for k in ("concurrency", "throughput", "p50_ms", "p90_ms", "p99_ms", "mean_ms")} == {
        "concurrency": 4, "throughput": 123.5, "p50_ms": 31.0, "p90_ms": 35.5, "p99_ms": 41.25, "mean_ms": 32.0}


def test_setup_without_download_says_how(tmp_path):
    with pytest.raises(PerfAnalyzerUnavailable, match="--setup"):
        setup(tmp_path / "empty-cache", download=False)
