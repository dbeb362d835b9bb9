"""Latency statistics: timed repetitions after an excluded warmup, and their percentiles.

The clock is read only after ``sync()`` returns, so on CUDA the time covers the work the call
queued, not just its launch (``torch.cuda.synchronize`` there; a no-op on the CPU).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class LatencyStats:
    """Summary of timed calls, in milliseconds; ``throughput`` is items per second."""

    count: int
    batch_size: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    throughput: float

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(seconds: Sequence[float], batch_size: int = 1) -> LatencyStats:
    """Percentiles (linear interpolation) and mean of per-call durations in seconds.

    Throughput is ``batch_size * count / sum(seconds)``: items per second when calls run back to back.
    """
    samples = np.asarray(seconds, dtype=np.float64)
    if samples.size == 0:
        raise ValueError("no timed samples to summarize")
    if not np.all(np.isfinite(samples)) or np.any(samples < 0):
        raise ValueError(f"durations must be finite and non-negative, got {samples.tolist()}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    p50, p90, p99 = np.percentile(samples, PERCENTILES) * 1e3
    total = float(samples.sum())
    return LatencyStats(
        count=int(samples.size),
        batch_size=int(batch_size),
        mean_ms=float(samples.mean() * 1e3),
        p50_ms=float(p50),
        p90_ms=float(p90),
        p99_ms=float(p99),
        min_ms=float(samples.min() * 1e3),
        max_ms=float(samples.max() * 1e3),
        throughput=float(batch_size * samples.size / total) if total > 0 else float("inf"),
    )


def time_calls(
    call: Callable[[object], object],
    make_input: Callable[[int], object],
    *,
    warmup: int,
    iters: int,
    sync: Callable[[], None] = lambda: None,
    clock: Callable[[], float] = time.perf_counter,
) -> list[float]:
    """Run ``call(make_input(i))`` ``warmup + iters`` times; return the ``iters`` timed durations (s).

    Each call gets a fresh input from ``make_input`` built *outside* the timed region. Warmup calls
    (first-call allocation, autotuning, lazy initialisation) run first and are never timed.
    """
    if warmup < 0 or iters < 1:
        raise ValueError(f"need warmup >= 0 and iters >= 1, got warmup={warmup} iters={iters}")
    for i in range(warmup):
        call(make_input(i))
    sync()
    durations = []
    for i in range(iters):
        x = make_input(warmup + i)
        sync()
        start = clock()
        call(x)
        sync()
        durations.append(clock() - start)
    return durations
