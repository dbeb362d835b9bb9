"""The issue's goals, measured against this run's rows (ratios side by side; never tuned to pass)."""

from __future__ import annotations


def _same(name: str, backend: str) -> bool:
    """``ort-fp32@cpu`` also matches ``ort-fp32@cpu-t2`` (the same backend with --threads)."""
    return name == backend or name.startswith(backend + "-t")


def _p50(latency: list[dict], backend: str, batch: int) -> float | None:
    for row in latency:
        if _same(row["backend"], backend) and row["batch_size"] == batch and not row.get("skipped"):
            return row["p50_ms"]
    return None


def _throughput(latency: list[dict], backend: str, batch: int) -> float | None:
    for row in latency:
        if _same(row["backend"], backend) and row["batch_size"] == batch and not row.get("skipped"):
            return row["throughput"]
    return None


def _passed(parity: list[dict], backend: str) -> bool | None:
    for row in parity:
        if _same(row["backend"], backend) and not row.get("skipped"):
            return bool(row["passed"])
    return None


def _ratio(num: float | None, den: float | None) -> float | None:
    return None if num is None or den is None or den == 0 else num / den


def add_speedups(latency: list[dict], reference: str) -> None:
    """``speedup_vs_reference``: reference p50 / row p50 at the same batch size."""
    for row in latency:
        if not row.get("skipped"):
            row["speedup_vs_reference"] = _ratio(_p50(latency, reference, row["batch_size"]), row["p50_ms"])


def evaluate(latency: list[dict], parity: list[dict], *, reference: str) -> list[dict]:
    goals = []
    int8 = _ratio(_p50(latency, "ort-fp32@cpu", 1), _p50(latency, "ort-int8@cpu", 1))
    gate = _passed(parity, "ort-int8@cpu")
    goals.append({"goal": "ORT INT8 vs ORT FP32, CPU, batch 1 (p50 ratio), INT8 gate met", "target": ">= 1.5x",
                  "achieved": None if int8 is None else f"{int8:.2f}x",
                  "met": None if int8 is None else bool(int8 >= 1.5 and gate is True),
                  "note": f"INT8 gate: {'-' if gate is None else ('PASS' if gate else 'FAIL')}"})
    ort = _ratio(_p50(latency, reference, 1), _p50(latency, "ort-fp32@cpu", 1))
    goals.append({"goal": "ORT FP32 vs PyTorch FP32 eager, CPU, batch 1 (p50 ratio)", "target": ">= 1.0x (stretch 1.3x)",
                  "achieved": None if ort is None else f"{ort:.2f}x",
                  "met": None if ort is None else bool(ort >= 1.0),
                  "note": "" if ort is None else ("stretch met" if ort >= 1.3 else "stretch not met")})
    cuda_rows = [r for r in latency if r["device"].startswith("cuda") and not r.get("skipped")]
    if not cuda_rows:
        note = "not measured: no CUDA GPU in this run (targets for ResNet-101 256x256 on H100/H200)"
        for goal, target in (("fastest PyTorch path, batch 1 latency", "<= 2.5 ms"),
                             ("fastest PyTorch path, batch 32 throughput", ">= 2500 img/s"),
                             ("TensorRT FP16 batch 1 / batch 32", "<= 1 ms / >= 3500 img/s"),
                             ("TensorRT INT8 vs FP16", ">= 1.6x")):
            goals.append({"goal": goal, "target": target, "achieved": None, "met": None, "note": note})
        return goals
    torch_cuda = [r for r in cuda_rows if r["backend"].startswith("torch-")]
    b1 = [r["p50_ms"] for r in torch_cuda if r["batch_size"] == 1]
    b32 = [r["throughput"] for r in torch_cuda if r["batch_size"] == 32]
    goals.append({"goal": "fastest PyTorch path, batch 1 latency", "target": "<= 2.5 ms",
                  "achieved": f"{min(b1):.2f} ms" if b1 else None, "met": (min(b1) <= 2.5) if b1 else None})
    goals.append({"goal": "fastest PyTorch path, batch 32 throughput", "target": ">= 2500 img/s",
                  "achieved": f"{max(b32):.0f} img/s" if b32 else None, "met": (max(b32) >= 2500) if b32 else None})
    trt1, trt32 = _p50(latency, "tensorrt-fp16@cuda", 1), _throughput(latency, "tensorrt-fp16@cuda", 32)
    goals.append({"goal": "TensorRT FP16 batch 1 / batch 32", "target": "<= 1 ms / >= 3500 img/s",
                  "achieved": None if trt1 is None else f"{trt1:.2f} ms / {trt32 or 0:.0f} img/s",
                  "met": None if trt1 is None or trt32 is None else bool(trt1 <= 1 and trt32 >= 3500)})
    r = _ratio(_throughput(latency, "tensorrt-int8@cuda", 32), trt32)
    goals.append({"goal": "TensorRT INT8 vs FP16 (batch 32 throughput)", "target": ">= 1.6x",
                  "achieved": None if r is None else f"{r:.2f}x", "met": None if r is None else bool(r >= 1.6)})
    return goals
