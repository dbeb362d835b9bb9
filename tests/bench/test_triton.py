"""Triton end to end in the bench: a real tritonserver, the real gRPC client, real images.

One server on a repository exported (FP32 ONNX at 256 px, the size the Triton pre-processing uses)
from the bench checkpoint; latency rows, parity against FP32 PyTorch, and both load tools.
"""

from __future__ import annotations

import pytest

from banet.spec import IMAGE_SIZE

pytestmark = [pytest.mark.needs_triton, pytest.mark.needs_data]


@pytest.fixture(scope="module")
def served(bench_checkpoint, tmp_path_factory):
    from banet.checkpoint import model_from_checkpoint
    from banet.server import TritonServer, free_port
    from export.onnx import export_onnx
    from export.repository import write_repository

    tmp = tmp_path_factory.mktemp("bench-triton")
    model = model_from_checkpoint(bench_checkpoint)[0]
    onnx_path = export_onnx(model, tmp / "model.onnx", image_size=IMAGE_SIZE)
    write_repository(tmp / "repo", onnx_path=onnx_path)
    server = TritonServer(tmp / "repo", grpc_port=free_port(), http_port=free_port(), metrics_port=None)
    server.start()
    yield server, model
    server.stop()


@pytest.fixture(scope="module")
def pool(data_root):
    from bench.inputs import load_pool

    return load_pool(data_root / "kvasir-seg", split="test", limit=3)


def test_triton_latency_parity_and_load(served, pool, data_root):
    from bench.backends import TorchBackend, TorchVariant
    from bench.latency import measure_latency
    from bench.backend_parity import score_backends
    from bench.triton import TritonBackend, load_sweep
    from export.parity import load_parity_set

    server, model = served
    backend = TritonBackend(server.grpc_url)
    assert backend.available() == (True, "")
    try:
        (row,) = measure_latency(backend, pool, [2], warmup=1, iters=2)
        assert row.skipped is None and row.stats.count == 2 and row.stats.p50_ms > 0

        data = load_parity_set(f"{data_root / 'kvasir-seg'}:test", count=3)
        (parity,) = score_backends([backend], TorchBackend(model, TorchVariant()), data, image_size=IMAGE_SIZE)
        assert parity["images"] == 3 and parity["passed"], parity
        assert parity["mean_agreement"] >= 0.999

        rows = load_sweep(backend, pool, [1, 2], perf_analyzer=False, seconds=1.5)
    finally:
        backend.close()
    tools = {(r["tool"], r["concurrency"]): r for r in rows}
    assert set(tools) == {(t, c) for t in ("perf_analyzer", "banet.client") for c in (1, 2)}
    for c in (1, 2):
        client = tools[("banet.client", c)]
        assert client["skipped"] is None and client["throughput"] > 0 and client["count"] >= 1
        assert tools[("perf_analyzer", c)]["skipped"] == "--no-perf-analyzer"


@pytest.mark.needs_perf_analyzer
def test_perf_analyzer_load_rows(served, pool):
    """The bench's load sweep with Triton's perf_analyzer over gRPC, sending the pool's real encoded
    images. A functional check: on shared cores its windows need not agree (stability 1000 %)."""
    from bench.triton import TritonBackend, load_sweep

    server, _ = served
    backend = TritonBackend(server.grpc_url)
    try:
        rows = load_sweep(backend, pool, [1, 2], seconds=1.5, download=False, pa_stability_percentage=1000)
    finally:
        backend.close()
    pa = {r["concurrency"]: r for r in rows if r["tool"] == "perf_analyzer"}
    assert sorted(pa) == [1, 2]
    for row in pa.values():
        assert row["skipped"] is None, row["skipped"]
        assert row["throughput"] > 0 and row["p99_ms"] >= row["p50_ms"] > 0 and row["count"] >= 1


def test_unreachable_server_is_a_skip_with_reason(pool):
    from banet.server import free_port
    from bench.triton import TritonBackend, load_sweep

    backend = TritonBackend(f"127.0.0.1:{free_port()}")
    ok, reason = backend.available()
    assert not ok and "not ready" in reason
    rows = load_sweep(backend, pool, [1])
    assert all(r["skipped"] == reason for r in rows)


def test_load_sweep_without_perf_analyzer_falls_back_visibly(pool, monkeypatch, caplog):
    # perf_analyzer unavailable (no libb64 on a fresh machine): skipped rows with the reason, a warning
    # that says so, and the banet.client rows still measured
    import bench.perf_analyzer as pa
    import bench.triton as triton_bench

    class Ready:
        url, model = "127.0.0.1:1", "banet"

        def available(self):
            return True, ""

    def unavailable(download):
        raise pa.PerfAnalyzerUnavailable("perf_analyzer needs missing shared libraries ['libb64.so.0d']")

    monkeypatch.setattr(pa, "setup", unavailable)
    monkeypatch.setattr(triton_bench, "client_sweep", lambda backend, pool, cs, seconds: [
        {"tool": "banet.client", "concurrency": c, "skipped": None} for c in cs])
    with caplog.at_level("WARNING", logger="bench.triton"):
        rows = triton_bench.load_sweep(Ready(), pool, [1, 2])
    assert [(r["tool"], r["concurrency"], bool(r["skipped"])) for r in rows] == [
        ("perf_analyzer", 1, True), ("perf_analyzer", 2, True), ("banet.client", 1, False), ("banet.client", 2, False)]
    assert "perf_analyzer unavailable" in caplog.text and "banet.client only" in caplog.text
