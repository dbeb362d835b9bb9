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


INT8_CPU_TARGETS = {1: 1.5, 8: 1.8}
"""ORT INT8 / ORT FP32 p50 ratio to reach on the CPU, by batch size (issue 13)."""


def _row(latency: list[dict], backend: str, batch: int) -> dict | None:
    for row in latency:
        if _same(row["backend"], backend) and row["batch_size"] == batch and not row.get("skipped"):
            return row
    return None


def repeat_ratios(latency: list[dict], num: str, den: str, batch: int) -> list[float]:
    """``num`` p50 / ``den`` p50 in each repeat (rows of ``bench.latency.merge_repeats``), else the one ratio."""
    a, b = _row(latency, num, batch), _row(latency, den, batch)
    if a is None or b is None:
        return []
    pa, pb = a.get("repeat_p50_ms") or [a["p50_ms"]], b.get("repeat_p50_ms") or [b["p50_ms"]]
    return [x / y for x, y in zip(pa, pb) if y]


def _int8_goal(latency: list[dict], parity: list[dict], batch: int, target: float) -> dict:
    """The CPU INT8 speed goal at one batch size: median ratio over the repeats, min-max in the note.

    Met when the median reaches ``target`` and the INT8 gate did not fail in this run. A run without
    parity (random weights: ``--no-parity``) says so in the note; the gate is then the export's on a
    trained checkpoint (docs/bench.md).
    """
    import statistics

    ratios = repeat_ratios(latency, "ort-fp32@cpu", "ort-int8@cpu", batch)
    gate = _passed(parity, "ort-int8@cpu")
    name = ("ORT INT8 vs ORT FP32, CPU, batch 1 (p50 ratio), INT8 gate met" if batch == 1 else
            f"ORT INT8 vs ORT FP32 at batch {batch}, CPU (p50 ratio), INT8 gate met")
    goal = {"goal": name, "target": f">= {target}x", "achieved": None, "met": None, "ratios": ratios}
    gate_note = ("INT8 gate: not scored in this run (no parity)" if gate is None
                 else f"INT8 gate: {'PASS' if gate else 'FAIL'}")
    if not ratios:
        goal["note"] = gate_note
        return goal
    median = statistics.median(ratios)
    goal["achieved"] = f"{median:.2f}x"
    goal["met"] = bool(median >= target and gate is not False)
    spread = (f"median of {len(ratios)} repeats, min-max {min(ratios):.2f}x-{max(ratios):.2f}x"
              f" ({'all' if min(ratios) >= target else 'not all'} >= {target}x)" if len(ratios) > 1 else "one run")
    goal["note"] = f"{spread}; {gate_note}"
    return goal


def evaluate(latency: list[dict], parity: list[dict], *, reference: str) -> list[dict]:
    goals = [_int8_goal(latency, parity, batch, target) for batch, target in INT8_CPU_TARGETS.items()]
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
