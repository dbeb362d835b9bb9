"""Backends: skip reasons where a backend cannot run, PyTorch paths that agree with the reference."""

from __future__ import annotations

import numpy as np
import pytest

from bench.backends import (TorchBackend, TorchVariant, ort_backend, tensorrt_backend, torch_tensorrt_backend,
                            torch_variants)
from bench.inputs import InputPool
from bench.latency import measure_latency

SIZE = 64


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    from banet.checkpoint import model_from_checkpoint

    return model_from_checkpoint(tiny_checkpoint)[0]


@pytest.fixture(scope="module")
def pool():
    rng = np.random.default_rng(1)
    images = tuple(rng.integers(0, 256, size=(40 + 8 * i, 50, 3), dtype=np.uint8) for i in range(3))
    from banet import processing

    tensors = np.stack([processing.preprocess(img, SIZE) for img in images])
    return InputPool(("a", "b", "c"), images, (b"", b"", b""), tensors, (None, None, None))


def test_pool_batches_are_fresh_and_rotate(pool):
    b0, b1 = pool.batch(2, 0), pool.batch(2, 1)
    assert b0.names == ("a", "b") and b1.names == ("c", "a")
    assert b0.tensor.shape == (2, 3, SIZE, SIZE)
    assert not np.shares_memory(b0.tensor, pool.tensors)
    assert b1.sizes == ((56, 50), (40, 50))


@pytest.mark.needs_no_cuda
def test_cuda_only_paths_are_skipped_with_a_reason(model):
    for variant in (TorchVariant("fp16", channels_last=True, cuda_graph=True, device="cuda"),
                    TorchVariant("fp16", compile=True, device="cuda"), TorchVariant("fp32", device="cuda")):
        ok, reason = TorchBackend(model, variant).available()
        assert not ok and "no CUDA device" in reason


def test_cuda_graph_and_compile_are_refused_on_the_cpu(model):
    for variant, what in ((TorchVariant("fp32", cuda_graph=True, device="cpu"), "CUDA graphs"),
                          (TorchVariant("fp16", compile=True, device="cpu"), "torch.compile")):
        ok, reason = TorchBackend(model, variant).available()
        assert not ok and f"{what} are measured on CUDA only" in reason


@pytest.mark.needs_no_cuda
def test_tensorrt_backend_without_a_gpu_says_why(tmp_path):
    from export import tensorrt as trt_route

    ok, reason = tensorrt_backend(tmp_path / "model_fp16.plan", "fp16").available()
    # a builder (TensorRT-RTX here) may be installed: what is missing then is the GPU to run on
    expected = "not installed" if trt_route.load_builder() is None else "needs a CUDA GPU and none is visible"
    assert not ok and expected in reason, reason


@pytest.mark.needs_no_torch_tensorrt
def test_torch_tensorrt_backend_without_it_says_why(model):
    ok, reason = torch_tensorrt_backend(model, "fp16", SIZE).available()
    assert not ok and ("torch_tensorrt Python package is not installed" in reason
                       or "no CUDA GPU is visible" in reason), reason


def test_ort_backend_names_a_missing_artifact_and_provider(tmp_path):
    ok, reason = ort_backend(tmp_path / "missing.onnx", "fp32").available()
    assert not ok and "missing.onnx" in reason
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        ok, reason = ort_backend(tmp_path / "missing.onnx", "fp32", "cuda").available()
        assert not ok and "CUDAExecutionProvider" in reason


def test_skipped_backend_gives_skipped_rows(model, pool):
    backend = TorchBackend(model, TorchVariant("fp32", compile=True, device="cpu"))
    rows = measure_latency(backend, pool, [1, 2], warmup=0, iters=1)
    assert [r.batch_size for r in rows] == [1, 2]
    assert all(r.stats is None and "CUDA only" in r.skipped for r in rows)


@pytest.mark.parametrize("variant", [TorchVariant("fp32", channels_last=True), TorchVariant("fp16")],
                         ids=lambda v: v.name)
def test_torch_variants_agree_with_fp32_eager(model, pool, variant):
    reference = TorchBackend(model, TorchVariant())
    other = TorchBackend(model, variant)
    ok, reason = other.available()
    if not ok:
        pytest.skip(reason)
    batch = pool.batch(3)
    reference.prepare(3)
    other.prepare(3)
    ref = reference.logits(reference.run(reference.stage(batch)))
    out = other.logits(other.run(other.stage(batch)))
    assert out.shape == ref.shape == (3, 1, SIZE, SIZE) and out.dtype == np.float32
    # the random-weight logits are small (|max| ~ 8e-3), so tolerances are relative to their scale;
    # seen on the CPU: channels_last 1.5e-8 (2e-6 of the scale), FP16 autocast 2.6e-5 (0.3 %)
    scale = float(np.abs(ref).max())
    tolerance = 1e-4 * scale if variant.precision == "fp32" else 0.01 * scale
    assert np.abs(out - ref).max() <= tolerance, (np.abs(out - ref).max(), scale)
    masks, expected = other.masks(out, batch), reference.masks(ref, batch)
    assert [m.shape for m in masks] == [e.shape for e in expected] == list(batch.sizes)
    for mask, want in zip(masks, expected):
        assert 0.1 < np.mean(want > 0) < 0.9  # masks with real boundaries: agreement means something
        agreement = float(np.mean((mask > 0) == (want > 0)))
        # FP32 layouts must give the same masks; FP16 may flip pixels on the threshold (seen >= 0.9986)
        assert agreement >= (1.0 if variant.precision == "fp32" else 0.995), agreement


def test_latency_rows_have_stats_and_memory(model, pool):
    rows = measure_latency(TorchBackend(model, TorchVariant()), pool, [1, 2], warmup=1, iters=3)
    for row, size in zip(rows, [1, 2]):
        assert row.skipped is None and row.stats.count == 3 and row.stats.batch_size == size
        assert row.stats.p50_ms > 0 and row.peak_memory_mib > 0
        assert row.to_dict()["p99_ms"] == row.stats.p99_ms


# --- the CUDA paths (needs_cuda: they skip without a GPU) -------------------------------------------
# Tolerances relative to the logits' scale, per precision: FP32 on CUDA runs its convolutions in TF32
# by default (10-bit mantissa), FP16 and BF16 through autocast. A wrong path (stale CUDA-graph output,
# a layout mix-up) is off by about the whole scale.
CUDA_TOLERANCE = {"fp32": 0.01, "fp16": 0.03, "bf16": 0.06}


def _logits(backend: TorchBackend, batch) -> np.ndarray:
    backend.prepare(len(batch.names))
    out = backend.logits(backend.run(backend.stage(batch)))  # a copy on the host: graphs reuse their output
    backend.synchronize()
    return out


@pytest.mark.needs_cuda
@pytest.mark.parametrize("variant", [v for v in torch_variants("cuda") if v.device == "cuda"], ids=lambda v: v.name)
def test_cuda_paths_agree_with_fp32_on_the_cpu(model, pool, variant):
    """Every CUDA path of the bench (eager FP32/FP16/BF16, channels_last, CUDA graph, torch.compile),
    at two batch sizes (a CUDA graph is captured again, torch.compile sees a new shape)."""
    reference, other = TorchBackend(model, TorchVariant()), TorchBackend(model, variant)
    ok, reason = other.available()
    assert ok, reason
    try:
        for size, offset in ((3, 0), (2, 1)):
            batch = pool.batch(size, offset)
            ref, out = _logits(reference, batch), _logits(other, batch)
            assert out.shape == ref.shape == (size, 1, SIZE, SIZE) and out.dtype == np.float32
            scale = float(np.abs(ref).max())
            assert np.abs(out - ref).max() <= CUDA_TOLERANCE[variant.precision] * scale, (np.abs(out - ref).max(), scale)
            for mask, want in zip(other.masks(out, batch), reference.masks(ref, batch)):
                assert 0.1 < np.mean(want > 0) < 0.9  # masks with real boundaries: agreement means something
                assert float(np.mean((mask > 0) == (want > 0))) >= 0.98
    finally:
        other.close()


@pytest.mark.needs_cuda
def test_cuda_graph_replays_each_new_batch(model, pool):
    """The graph's input is copied in at every run: a second batch gives its own logits, not the
    first one's (the static output buffer is rewritten by each replay)."""
    graph = TorchBackend(model, TorchVariant("fp16", channels_last=True, cuda_graph=True, device="cuda"))
    eager = TorchBackend(model, TorchVariant("fp16", channels_last=True, device="cuda"))
    a, b = pool.batch(2, 0), pool.batch(2, 1)
    try:
        first, second, again = _logits(graph, a), _logits(graph, b), _logits(graph, a)
        scale = float(np.abs(first).max())
        assert np.abs(first - second).max() > 0.1 * scale  # different images, different logits
        np.testing.assert_allclose(again, first, atol=1e-3 * scale)  # a replay is deterministic
        np.testing.assert_allclose(second, _logits(eager, b), atol=0.01 * scale)
    finally:
        graph.close()
        eager.close()


@pytest.mark.needs_cuda
def test_cuda_latency_rows_report_gpu_memory(model, pool):
    variant = TorchVariant("fp16", channels_last=True, cuda_graph=True, device="cuda")
    rows = measure_latency(TorchBackend(model, variant), pool, [1, 2], warmup=2, iters=3)
    for row, size in zip(rows, [1, 2]):
        assert row.skipped is None and row.stats.count == 3 and row.stats.batch_size == size
        assert row.stats.p50_ms > 0 and row.peak_memory_mib > 0 and row.memory_kind.startswith("cuda")


def test_tensorrt_backend_uses_the_exports_runtime_gate(tmp_path, monkeypatch):
    """On a simulated H200 (TensorRT importable, a GPU visible) the bench does not try to run a TensorRT-RTX
    engine built for RTX targets: the export's runtime gate, read from the manifest record, says why."""
    import types

    from export import tensorrt as trt_route

    builder = trt_route.Builder("tensorrt_rtx", types.SimpleNamespace(), "tensorrt_rtx_bindings", "1.7")
    monkeypatch.setattr(trt_route, "load_builder", lambda kind=None: builder)
    monkeypatch.setattr(trt_route.Builder, "can_run", lambda self: True)
    monkeypatch.setattr(trt_route, "gpu", lambda: {"name": "NVIDIA H200", "compute_capability": "9.0", "sm": "SM90"})
    plan = tmp_path / "model_fp16_rtx.plan"
    plan.write_bytes(b"engine")
    record = {"targets": list(trt_route.RTX_DEFAULT_TARGETS), "version_compatible": False, "io": "float32"}
    ok, why = tensorrt_backend(plan, "fp16", record).available()
    assert not ok and "no SM90 target" in why
    ok, _ = tensorrt_backend(plan, "fp16", {**record, "targets": ["SM90"]}).available()
    assert ok  # a plan built for this GPU would be run
