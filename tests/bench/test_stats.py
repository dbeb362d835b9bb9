"""Latency statistics: percentiles, throughput, and warmup calls that never reach the numbers."""

from __future__ import annotations

import numpy as np
import pytest

from bench.stats import summarize, time_calls


class FakeClock:
    """A clock that only moves when the fake backend "works": deterministic durations."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_percentiles_and_throughput_by_hand():
    seconds = [i / 1000 for i in range(1, 101)]  # 1 ms .. 100 ms
    s = summarize(seconds, batch_size=4)
    assert s.count == 100
    assert s.p50_ms == pytest.approx(50.5)
    assert s.p90_ms == pytest.approx(90.1)
    assert s.p99_ms == pytest.approx(99.01)
    assert s.mean_ms == pytest.approx(50.5)
    assert (s.min_ms, s.max_ms) == (pytest.approx(1.0), pytest.approx(100.0))
    assert s.throughput == pytest.approx(4 * 100 / sum(seconds))


def test_summarize_refuses_bad_samples():
    with pytest.raises(ValueError, match="no timed samples"):
        summarize([])
    with pytest.raises(ValueError, match="finite"):
        summarize([0.1, float("nan")])
    with pytest.raises(ValueError, match="batch_size"):
        summarize([0.1], batch_size=0)


def _slow_first_call(clock: FakeClock, seen: list):
    def call(x):
        seen.append(x)
        clock.now += 5.0 if len(seen) == 1 else 0.002  # first call: 5 s of "lazy initialisation"
    return call


def test_warmup_is_excluded():
    clock, seen = FakeClock(), []
    durations = time_calls(_slow_first_call(clock, seen), lambda i: i, warmup=2, iters=10, clock=clock)
    assert len(durations) == 10 and len(seen) == 12
    assert np.allclose(durations, 0.002)
    assert summarize(durations).p99_ms == pytest.approx(2.0)


def test_without_warmup_the_slow_call_shows():
    # the same fake backend with no warmup: the statistics must see the slow call (the test above can fail)
    clock, seen = FakeClock(), []
    durations = time_calls(_slow_first_call(clock, seen), lambda i: i, warmup=0, iters=10, clock=clock)
    assert max(durations) == pytest.approx(5.0)
    assert summarize(durations).mean_ms > 400


def test_fresh_input_per_call_and_sync_around_the_clock():
    clock, events = FakeClock(), []

    def call(x):
        events.append(("call", x))
        clock.now += 0.001

    def sync():
        events.append(("sync", clock.now))
        clock.now += 0.5  # time spent waiting for the device must count only inside the window

    durations = time_calls(call, lambda i: f"batch{i}", warmup=1, iters=3, sync=sync, clock=clock)
    assert [x for kind, x in events if kind == "call"] == ["batch0", "batch1", "batch2", "batch3"]
    # each timed call: clock read after the pre-sync, then call, then sync, then clock
    assert durations == pytest.approx([0.501] * 3)


def test_time_calls_refuses_no_iterations():
    with pytest.raises(ValueError, match="iters"):
        time_calls(lambda x: None, lambda i: i, warmup=0, iters=0)


class _SlowBackend:
    """A fake backend whose every call takes ``seconds`` on ``clock`` (a FakeClock: exact durations)."""

    name, precision, device, end_to_end = "slow", "fp32", "cpu", False

    def __init__(self, seconds: float, clock: FakeClock):
        self.seconds, self.clock, self.calls = seconds, clock, 0

    def available(self):
        return True, ""

    def prepare(self, batch_size):
        pass

    def stage(self, batch):
        return batch

    def run(self, staged):
        self.calls += 1
        self.clock.now += self.seconds

    def synchronize(self):
        pass


def test_row_budget_cuts_iterations_and_skips_hopeless_rows():
    from bench.inputs import InputPool
    from bench.latency import measure_latency

    pool = InputPool(("a",), (np.zeros((4, 4, 3), np.uint8),), (b"",), np.zeros((1, 3, 4, 4), np.float32), (None,))
    clock = FakeClock()
    slow = _SlowBackend(0.02, clock)
    (row,) = measure_latency(slow, pool, [1], warmup=2, iters=50, row_budget_s=0.1, clock=clock)
    # 0.1 s budget / 0.02 s per call: 5 timed calls, not 50
    assert row.skipped is None and row.stats.count == 5 and row.extra["iters_cut_from"] == 50
    assert row.stats.p50_ms == pytest.approx(20.0)
    assert slow.calls == 2 + row.stats.count  # the budget probe is the first warmup call
    hopeless = _SlowBackend(0.15, clock)
    (row,) = measure_latency(hopeless, pool, [1], warmup=3, iters=10, row_budget_s=0.1, clock=clock)
    assert row.stats is None and "over budget" in row.skipped and hopeless.calls == 1


def test_interleaved_rounds_rotate_and_skip_unavailable():
    from bench.backends import Unavailable
    from bench.inputs import InputPool
    from bench.latency import measure_interleaved

    pool = InputPool(("a",), (np.zeros((4, 4, 3), np.uint8),), (b"",), np.zeros((1, 3, 4, 4), np.float32), (None,))
    order: list[str] = []
    clock = FakeClock()

    class Logged(_SlowBackend):
        def __init__(self, name, seconds):
            super().__init__(seconds, clock)
            self.name = name

        def run(self, staged):
            order.append(self.name)
            super().run(staged)

    a, b = Logged("a", 0.001), Logged("b", 0.004)
    rows = measure_interleaved([a, Unavailable("gpu-only", "no CUDA device"), b], pool, 2, warmup=1, iters=4,
                               clock=clock)
    assert [r.backend for r in rows] == ["a", "gpu-only", "b"]
    assert rows[1].skipped == "no CUDA device" and rows[1].stats is None
    assert order[:2] == ["a", "b"]  # warmup, one each
    assert order[2:] == ["a", "b", "b", "a", "a", "b", "b", "a"]  # rounds rotate who goes first
    assert rows[0].stats.count == rows[2].stats.count == 4
    assert (rows[0].stats.p50_ms, rows[2].stats.p50_ms) == (pytest.approx(1.0), pytest.approx(4.0))
