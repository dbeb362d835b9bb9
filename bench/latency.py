"""Time one backend at several batch sizes: warmup excluded, fresh real-image batches, peak memory."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields

from bench.backends import Backend
from bench.inputs import InputPool
from bench.stats import LatencyStats, summarize, time_calls

Clock = Callable[[], float]

log = logging.getLogger(__name__)


@dataclass
class LatencyRow:
    """One backend at one batch size: the statistics, or why it was skipped."""

    backend: str
    precision: str
    device: str
    batch_size: int
    stats: LatencyStats | None = None
    peak_memory_mib: float | None = None
    memory_kind: str | None = None
    skipped: str | None = None
    extra: dict = field(default_factory=dict)
    samples: list[float] = field(default_factory=list)
    """The timed durations (seconds) the stats summarize, in call order."""

    def to_dict(self) -> dict:
        return {
            "backend": self.backend, "precision": self.precision, "device": self.device,
            "batch_size": self.batch_size, "skipped": self.skipped,
            "peak_memory_mib": self.peak_memory_mib, "memory_kind": self.memory_kind,
            **(self.stats.to_dict() if self.stats else {}), **self.extra,
            **({"samples_ms": [round(s * 1e3, 3) for s in self.samples]} if self.samples else {}),
        }

    @classmethod
    def from_dict(cls, data: dict) -> LatencyRow:
        """The row :meth:`to_dict` wrote (a results file's ``latency`` entry); ``to_dict`` gives ``data`` back.

        A row that is not skipped must hold every statistic; keys this class does not name go to ``extra``.
        """
        data = dict(data)
        missing = [k for k in ("backend", "precision", "device", "batch_size") if k not in data]
        if missing:
            raise ValueError(f"not a latency row: no {', '.join(missing)} in {sorted(data)}")
        core = {k: data.pop(k) for k in ("backend", "precision", "device", "batch_size")}
        row = cls(**core, skipped=data.pop("skipped", None), peak_memory_mib=data.pop("peak_memory_mib", None),
                  memory_kind=data.pop("memory_kind", None))
        names = [f.name for f in fields(LatencyStats) if f.name != "batch_size"]
        if any(name in data for name in names):
            absent = [name for name in names if name not in data]
            if absent:
                raise ValueError(f"latency row {row.backend} batch {row.batch_size}: no {', '.join(absent)}")
            row.stats = LatencyStats(batch_size=row.batch_size, **{name: data.pop(name) for name in names})
        elif row.skipped is None:
            raise ValueError(f"latency row {row.backend} batch {row.batch_size} is neither skipped nor measured")
        row.samples = [ms / 1e3 for ms in data.pop("samples_ms", [])]
        row.extra = data
        return row


def merge_repeats(repeats: Sequence[Sequence[LatencyRow]]) -> list[LatencyRow]:
    """One row per backend and batch size from several repeats of the same measurement.

    The stats summarize the timed calls of every repeat together; ``repeat_p50_ms`` keeps each
    repeat's own median, from which the goals take the spread of their ratios (:mod:`bench.goals`).
    A row skipped in any repeat is skipped (with the first reason). Order: the first repeat's.
    """
    if not repeats:
        return []
    groups: dict[tuple[str, int], list[LatencyRow]] = {}
    for rows in repeats:
        for row in rows:
            groups.setdefault((row.backend, row.batch_size), []).append(row)
    merged = []
    for row in repeats[0]:
        parts = groups[(row.backend, row.batch_size)]
        out = LatencyRow(row.backend, row.precision, row.device, row.batch_size, extra=dict(row.extra),
                         memory_kind=row.memory_kind)
        skipped = next((p.skipped for p in parts if p.skipped), None)
        if skipped or len(parts) != len(repeats):
            out.skipped = skipped or f"measured in {len(parts)} of {len(repeats)} repeats"
        else:
            out.samples = [s for p in parts for s in p.samples]
            out.stats = summarize(out.samples, row.batch_size)
            out.peak_memory_mib = max(p.peak_memory_mib or 0.0 for p in parts) or None
            out.extra["repeats"] = len(parts)
            out.extra["repeat_p50_ms"] = [p.stats.p50_ms for p in parts]
        merged.append(out)
    return merged


# --- peak memory: device memory on CUDA, resident set size on the CPU -----------------------------
def _reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats()
        return
    try:  # Linux: writing 5 resets the process's peak RSS (VmHWM) to the current RSS
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def _read_peak(device: str) -> tuple[float | None, str]:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 2**20, "cuda max_memory_allocated (torch allocator)"
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024, "process peak RSS (VmHWM)"
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process peak RSS since start (ru_maxrss)"


def _first_call_seconds(backend: Backend, pool: InputPool, batch_size: int, clock: Clock) -> float:
    x = backend.stage(pool.batch(batch_size, 0))
    backend.synchronize()
    started = clock()
    backend.run(x)
    backend.synchronize()
    return clock() - started


def measure_latency(backend: Backend, pool: InputPool, batch_sizes: Sequence[int], *,
                    warmup: int, iters: int, row_budget_s: float | None = None,
                    clock: Clock = time.perf_counter) -> list[LatencyRow]:
    """Latency rows of ``backend`` for each batch size (a skipped row when it cannot run here).

    Each timed call gets a fresh batch gathered from ``pool`` at a new offset; staging (copy to the
    device, layout) happens outside the timed region, so the time is the backend's ``run`` alone.

    ``row_budget_s`` bounds the timed calls of one row on a slow path (e.g. BF16 without BF16
    kernels on a CPU): the first warmup call sets the estimate; a row whose single call exceeds the
    budget is skipped with that reason, otherwise ``iters`` is cut to fit (never below 3) and the
    row records ``iters_cut_from``. ``clock`` times the calls (a fake one makes tests exact).
    """
    ok, reason = backend.available()
    rows = []
    for batch_size in batch_sizes:
        row = LatencyRow(backend.name, backend.precision, backend.device, batch_size)
        if not ok:
            row.skipped = reason
            rows.append(row)
            continue
        try:
            started = time.perf_counter()
            backend.prepare(batch_size)
            row.extra["prepare_s"] = round(time.perf_counter() - started, 3)
            _reset_peak(backend.device)
            n_iters, n_warmup = iters, warmup
            if row_budget_s is not None:
                first = _first_call_seconds(backend, pool, batch_size, clock)  # counts as the first warmup call
                n_warmup = max(warmup - 1, 0)
                if first > row_budget_s:
                    row.skipped = (f"over budget: one call took {first:.1f} s > --row-budget {row_budget_s:g} s "
                                   f"(first call, warmup included)")
                    rows.append(row)
                    continue
                n_iters = min(iters, max(3, int(row_budget_s / max(first, 1e-9))))
                if n_iters < iters:
                    row.extra["iters_cut_from"] = iters
            seconds = time_calls(
                backend.run,
                lambda i: backend.stage(pool.batch(batch_size, i + 1)),
                warmup=n_warmup, iters=n_iters, sync=backend.synchronize, clock=clock,
            )
            row.stats = summarize(seconds, batch_size)
            row.samples = list(seconds)
            row.peak_memory_mib, row.memory_kind = _read_peak(backend.device)
            log.info("%s batch %d: p50 %.2f ms, %.1f img/s", backend.name, batch_size,
                     row.stats.p50_ms, row.stats.throughput)
        except Exception as err:  # noqa: BLE001 - one failing backend must not end the whole bench
            log.warning("%s batch %d failed: %s", backend.name, batch_size, err)
            row.skipped = f"failed: {type(err).__name__}: {err}"
        rows.append(row)
    return rows


def measure_interleaved(backends: Sequence[Backend], pool: InputPool, batch_size: int, *, warmup: int,
                        iters: int, row_budget_s: float | None = None,
                        clock: Clock = time.perf_counter) -> list[LatencyRow]:
    """Latency rows of several backends at one batch size, their timed calls interleaved.

    Round ``i`` times one call of every backend, in an order rotated by ``i``: on a shared machine a
    burst of load from elsewhere then lands on all backends alike instead of on whichever happened to
    run at that moment, so the ratios between rows stay meaningful. Warmup (and the ``row_budget_s``
    probe, see :func:`measure_latency`) runs per backend before the first round. Peak memory is the
    process's over the whole block (CPU) or the device's (CUDA), the same for every row.
    """
    rows, active = [], []
    for backend in backends:
        row = LatencyRow(backend.name, backend.precision, backend.device, batch_size)
        rows.append(row)
        ok, reason = backend.available()
        if not ok:
            row.skipped = reason
            continue
        try:
            started = time.perf_counter()
            backend.prepare(batch_size)
            row.extra["prepare_s"] = round(time.perf_counter() - started, 3)
            n_iters, n_warmup = iters, warmup
            if row_budget_s is not None:
                first = _first_call_seconds(backend, pool, batch_size, clock)
                n_warmup = max(warmup - 1, 0)
                if first > row_budget_s:
                    row.skipped = (f"over budget: one call took {first:.1f} s > --row-budget {row_budget_s:g} s "
                                   f"(first call, warmup included)")
                    continue
                n_iters = min(iters, max(3, int(row_budget_s / max(first, 1e-9))))
                if n_iters < iters:
                    row.extra["iters_cut_from"] = iters
            if n_warmup:  # untimed: the durations are dropped
                time_calls(backend.run, lambda i: backend.stage(pool.batch(batch_size, i)), warmup=0,
                           iters=n_warmup, sync=backend.synchronize)
        except Exception as err:  # noqa: BLE001 - one failing backend must not end the whole bench
            log.warning("%s batch %d failed: %s", backend.name, batch_size, err)
            row.skipped = f"failed: {type(err).__name__}: {err}"
            continue
        active.append((backend, row, n_iters, []))
    devices = {backend.device for backend, *_ in active}
    for device in devices:
        _reset_peak(device)
    for i in range(iters):
        shift = i % max(len(active), 1)
        for backend, row, n_iters, seconds in active[shift:] + active[:shift]:
            if i >= n_iters or row.skipped:
                continue
            try:
                seconds += time_calls(backend.run, lambda k: backend.stage(pool.batch(batch_size, i + 1)),
                                      warmup=0, iters=1, sync=backend.synchronize, clock=clock)
            except Exception as err:  # noqa: BLE001
                log.warning("%s batch %d failed: %s", backend.name, batch_size, err)
                row.skipped = f"failed: {type(err).__name__}: {err}"
    for backend, row, _, seconds in active:
        if row.skipped:
            continue
        row.stats = summarize(seconds, batch_size)
        row.samples = list(seconds)
        row.peak_memory_mib, kind = _read_peak(backend.device)
        row.memory_kind = f"{kind}, over the interleaved block of all backends"
        row.extra["interleaved"] = True
        log.info("%s batch %d: p50 %.2f ms, %.1f img/s (interleaved)", backend.name, batch_size,
                 row.stats.p50_ms, row.stats.throughput)
    return rows
