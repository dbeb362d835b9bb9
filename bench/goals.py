"""The issue's goals, measured against this run's rows (ratios side by side; never tuned to pass)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


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


@dataclass
class Goal:
    """One goal row of a run: each condition it names, whether that condition was measured in this run and met.

    ``met`` is True only when every condition was measured (not None) in this run and holds; False when one
    was measured and fails; None when one was not measured (the row then reads "-", never PASS). ``value`` is
    the achieved number (a ratio, ms or img/s) that later tools read (bench's ``achieved`` is its display).
    """

    goal: str
    target: str
    value: float | None = None
    unit: str = "x"
    conditions: dict[str, bool | None] = field(default_factory=dict)
    ratios: list[float] | None = None
    note: str = ""

    @property
    def met(self) -> bool | None:
        if not self.conditions:
            return None
        if any(v is False for v in self.conditions.values()):
            return False
        if any(v is None for v in self.conditions.values()):
            return None
        return True

    @property
    def achieved(self) -> str | None:
        if self.value is None:
            return None
        return f"{self.value:.2f}x" if self.unit == "x" else f"{self.value:.2f} {self.unit}"

    def to_dict(self) -> dict:
        """The one JSON encoding (``achieved`` and ``met`` included, so Markdown and readers agree)."""
        out = asdict(self)
        out.update(achieved=self.achieved, met=self.met)
        if self.ratios is None:
            out.pop("ratios")
        return out


def _int8_goal(latency: list[dict], parity: list[dict], batch: int, target: float, *, trained: bool) -> Goal:
    """The CPU INT8 speed goal at one batch size: median ratio over the repeats, min-max in the note.

    Two conditions, both from this run: the median ratio reaches ``target``, and the INT8 gate passed on
    this run's checkpoint. A run without parity (``--no-parity``) or on random weights (a gate there says
    nothing) leaves the gate unmeasured: the goal is then not met (None), whatever the speed.
    """
    import statistics

    ratios = repeat_ratios(latency, "ort-fp32@cpu", "ort-int8@cpu", batch)
    gate = _passed(parity, "ort-int8@cpu") if trained else None
    name = ("ORT INT8 vs ORT FP32, CPU, batch 1 (p50 ratio), INT8 gate met" if batch == 1 else
            f"ORT INT8 vs ORT FP32 at batch {batch}, CPU (p50 ratio), INT8 gate met")
    median = statistics.median(ratios) if ratios else None
    goal = Goal(goal=name, target=f">= {target}x", value=median, ratios=ratios,
                conditions={"speed": None if median is None else bool(median >= target), "int8_gate": gate})
    gate_note = (f"INT8 gate: {'PASS' if gate else 'FAIL'}" if gate is not None else
                 "INT8 gate: not scored in this run (random weights: the gate needs a trained checkpoint)"
                 if not trained else "INT8 gate: not scored in this run (no parity)")
    if not ratios:
        goal.note = gate_note
        return goal
    spread = (f"median of {len(ratios)} repeats, min-max {min(ratios):.2f}x-{max(ratios):.2f}x"
              f" ({'all' if min(ratios) >= target else 'not all'} >= {target}x)" if len(ratios) > 1 else "one run")
    goal.note = f"{spread}; {gate_note}"
    return goal


def evaluate(latency: list[dict], parity: list[dict], *, reference: str, trained: bool = True) -> list[dict]:
    """Every goal of the issue against this run's rows, as :meth:`Goal.to_dict` records.

    ``trained``: False for random weights (``--preset``, ``banet-info --random-checkpoint``): gates are then
    not scored, so no goal that names a gate can be met.
    """
    return [g.to_dict() for g in goals_of_run(latency, parity, reference=reference, trained=trained)]


def goals_of_run(latency: list[dict], parity: list[dict], *, reference: str, trained: bool = True) -> list[Goal]:
    goals = [_int8_goal(latency, parity, batch, target, trained=trained) for batch, target in INT8_CPU_TARGETS.items()]
    ort = _ratio(_p50(latency, reference, 1), _p50(latency, "ort-fp32@cpu", 1))
    goals.append(Goal("ORT FP32 vs PyTorch FP32 eager, CPU, batch 1 (p50 ratio)", ">= 1.0x (stretch 1.3x)", ort,
                      conditions={"speed": None if ort is None else bool(ort >= 1.0)},
                      note="" if ort is None else ("stretch met" if ort >= 1.3 else "stretch not met")))
    cuda_rows = [r for r in latency if r["device"].startswith("cuda") and not r.get("skipped")]
    if not cuda_rows:
        note = "not measured: no CUDA GPU in this run (targets for ResNet-101 256x256 on H100/H200)"
        for goal, target in (("fastest PyTorch path, batch 1 latency", "<= 2.5 ms"),
                             ("fastest PyTorch path, batch 32 throughput", ">= 2500 img/s"),
                             ("TensorRT FP16 batch 1 / batch 32", "<= 1 ms / >= 3500 img/s"),
                             ("TensorRT INT8 vs FP16 (batch 32 throughput)", ">= 1.6x")):
            goals.append(Goal(goal, target, None, conditions={"measured": None}, note=note))
        return goals
    torch_cuda = [r for r in cuda_rows if r["backend"].startswith("torch-")]
    b1 = [r["p50_ms"] for r in torch_cuda if r["batch_size"] == 1]
    b32 = [r["throughput"] for r in torch_cuda if r["batch_size"] == 32]
    goals.append(Goal("fastest PyTorch path, batch 1 latency", "<= 2.5 ms", min(b1) if b1 else None, unit="ms",
                      conditions={"batch1_ms": (min(b1) <= 2.5) if b1 else None}))
    goals.append(Goal("fastest PyTorch path, batch 32 throughput", ">= 2500 img/s", max(b32) if b32 else None,
                      unit="img/s", conditions={"batch32_img_s": (max(b32) >= 2500) if b32 else None}))
    trt1, trt32 = _p50(latency, "tensorrt-fp16@cuda", 1), _throughput(latency, "tensorrt-fp16@cuda", 32)
    goals.append(Goal("TensorRT FP16 batch 1 / batch 32", "<= 1 ms / >= 3500 img/s", trt1, unit="ms",
                      conditions={"batch1_ms": None if trt1 is None else bool(trt1 <= 1),
                                  "batch32_img_s": None if trt32 is None else bool(trt32 >= 3500)},
                      note="" if trt32 is None else f"batch 32: {trt32:.0f} img/s"))
    r = _ratio(_throughput(latency, "tensorrt-int8@cuda", 32), trt32)
    goals.append(Goal("TensorRT INT8 vs FP16 (batch 32 throughput)", ">= 1.6x", r,
                      conditions={"speed": None if r is None else bool(r >= 1.6)}))
    return goals
