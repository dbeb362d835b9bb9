"""perf_analyzer support: input data made of real encoded images, its CSV, a clear reason when absent."""

from __future__ import annotations

import base64
import json

import pytest

from bench.perf_analyzer import PerfAnalyzerUnavailable, parse_csv, setup, write_input_data


@pytest.mark.needs_data
def test_input_data_carries_the_real_files(kvasir_test_pairs, tmp_path):
    raw = [img.read_bytes() for img, _ in kvasir_test_pairs[:3]]
    path = write_input_data(raw, tmp_path / "input.json", "IMAGE_BYTES")
    data = json.loads(path.read_text())["data"]
    assert len(data) == 3
    assert [base64.b64decode(d["IMAGE_BYTES"]["content"]["b64"]) for d in data] == raw
    assert all(d["IMAGE_BYTES"]["shape"] == [1] for d in data)
    with pytest.raises(ValueError, match="no encoded images"):
        write_input_data([], tmp_path / "empty.json", "IMAGE_BYTES")


def test_parse_csv_converts_microseconds(tmp_path):
    csv_path = tmp_path / "pa.csv"
    csv_path.write_text(
        "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,"
        "Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,"
        "p50 latency,p90 latency,p95 latency,p99 latency,Avg latency,request/response,response wait\n"
        "4,123.5,10,200,30,40,5000,20,5,31000,35500,36000,41250,32000,0,0\n")
    row = parse_csv(csv_path)
    assert row == {"concurrency": 4, "throughput": 123.5, "p50_ms": 31.0, "p90_ms": 35.5,
                   "p99_ms": 41.25, "mean_ms": 32.0}


def test_setup_without_download_says_how(tmp_path):
    with pytest.raises(PerfAnalyzerUnavailable, match="--setup"):
        setup(tmp_path / "empty-cache", download=False)
