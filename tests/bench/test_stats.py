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
