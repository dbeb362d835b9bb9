"""Triton end to end over gRPC: encoded image in, mask out, through the project's client.

- :class:`TritonBackend` puts Triton behind the bench's :class:`bench.backends.Backend` interface:
  a batch of B images is B single-image requests sent together (the images differ in size, so the
  server's dynamic batcher, not the client, forms the batches), timed from the first send to the
  last mask received.
- :func:`load_sweep` loads the server at each concurrency level twice, with Triton's own
  ``perf_analyzer`` and with :class:`banet.client.TritonSegmenter` threads; every row names its tool.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from banet.spec import ENCODED_IMAGE, ENSEMBLE_MODEL, MASK_THRESHOLD

from bench.inputs import Batch, InputPool
from bench.stats import summarize

log = logging.getLogger(__name__)


class TritonBackend:
    """The ``banet`` ensemble on a running Triton server (``url`` is host:grpc_port)."""

    end_to_end = True

    def __init__(self, url: str, *, precision: str = "fp32", model: str = ENSEMBLE_MODEL):
        self.url, self.precision, self.model = url, precision, model
        self.name = "triton-grpc"
        self.device = "server"
        self._segmenter = None
        self._pool: ThreadPoolExecutor | None = None
        self._workers = 0

    def _client(self):
        if self._segmenter is None:
            from banet.client import TritonSegmenter

            self._segmenter = TritonSegmenter(self.url, model=self.model, retries=0)
        return self._segmenter

    def available(self) -> tuple[bool, str]:
        try:
            import tritonclient.grpc  # noqa: F401
        except ImportError as err:
            return False, f"tritonclient[grpc] is not installed ({err})"
        if not self._client().is_ready():
            return False, f"Triton at {self.url} is not ready (model {self.model!r})"
        return True, ""

    def prepare(self, batch_size: int) -> None:
        if self._workers != batch_size:
            if self._pool is not None:
                self._pool.shutdown()
            self._pool = ThreadPoolExecutor(max_workers=batch_size, thread_name_prefix="triton-bench")
            self._workers = batch_size

    def stage(self, batch: Batch):
        return list(batch.encoded)

    def run(self, staged: list[bytes]):
        segmenter = self._client()
        if len(staged) == 1:
            return [segmenter.predict(staged[0])]
        return list(self._pool.map(segmenter.predict, staged))

    def synchronize(self) -> None:
        pass

    def masks(self, output, batch: Batch, threshold: float = MASK_THRESHOLD) -> list[np.ndarray]:
        if threshold != MASK_THRESHOLD:
            raise ValueError("the Triton backend is scored at the server's default threshold only")
        return [p.mask for p in output]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool, self._workers = None, 0
        if self._segmenter is not None:
            self._segmenter.close()
            self._segmenter = None


class _ServerContext:
    """Starts ``banet.server.TritonServer`` on free ports for the length of a bench run."""

    def __init__(self, repository: str | Path):
        from banet.server import TritonServer, free_port

        self.server = TritonServer(repository, grpc_port=free_port(), http_port=free_port(), metrics_port=None)

    def __enter__(self):
        self.server.start()
        return self.server

    def __exit__(self, *exc):
        self.server.stop()


def triton_backend(*, url: str | None, repository: str | Path | None, precision: str = "fp32"):
    """``(backend, context)``: context is None for ``url``, or starts a server on ``repository``."""
    if url:
        return TritonBackend(url, precision=precision), None
    ctx = _ServerContext(repository)
    return TritonBackend(ctx.server.grpc_url, precision=precision), ctx


def client_sweep(backend: TritonBackend, pool: InputPool, concurrencies: Sequence[int], *,
                 seconds: float = 8.0, warmup: int = 2) -> list[dict]:
    """``c`` threads, each sending single-image requests back to back for ``seconds``; one row per ``c``."""
    from banet.client import TritonSegmenter

    rows = []
    segmenter = TritonSegmenter(backend.url, model=backend.model, retries=0)
    for i in range(warmup):
        segmenter.predict(pool.encoded[i % len(pool)])
    for c in concurrencies:
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        stop_at = time.perf_counter() + seconds

        def worker(offset: int) -> None:
            k = offset
            while time.perf_counter() < stop_at:
                data = pool.encoded[k % len(pool)]
                k += c
                started = time.perf_counter()
                try:
                    segmenter.predict(data)
                except Exception as err:  # noqa: BLE001 - count and report, keep loading
                    with lock:
                        errors.append(str(err))
                    continue
                with lock:
                    latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        threads = [threading.Thread(target=worker, args=(j,)) for j in range(c)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
        if not latencies:
            rows.append({"tool": "banet.client", "concurrency": c,
                         "skipped": f"no request succeeded: {errors[:1]}"})
            continue
        stats = summarize(latencies)
        rows.append({"tool": "banet.client", "concurrency": c, "throughput": len(latencies) / wall,
                     "p50_ms": stats.p50_ms, "p90_ms": stats.p90_ms, "p99_ms": stats.p99_ms,
                     "mean_ms": stats.mean_ms, "count": stats.count, "errors": len(errors), "skipped": None})
        log.info("banet.client concurrency %d: %.1f img/s", c, rows[-1]["throughput"])
    segmenter.close()
    return rows


def load_sweep(backend: TritonBackend, pool: InputPool, concurrencies: Sequence[int], *,
               perf_analyzer: bool = True, seconds: float = 8.0, download: bool = True,
               pa_stability_percentage: float = 50) -> list[dict]:
    """perf_analyzer rows (or skipped rows with the reason) and banet.client rows, per concurrency.

    ``download``: fetch perf_analyzer into its cache when missing (see :mod:`bench.perf_analyzer`);
    ``pa_stability_percentage``: see :func:`bench.perf_analyzer.sweep`.
    """
    ok, reason = backend.available()
    if not ok:
        return [{"tool": tool, "concurrency": c, "skipped": reason}
                for tool in ("perf_analyzer", "banet.client") for c in concurrencies]
    rows: list[dict] = []
    if perf_analyzer:
        from bench import perf_analyzer as pa

        try:
            tool = pa.setup(download=download)
            with tempfile.TemporaryDirectory(prefix="banet-pa-") as tmp:
                data = pa.write_input_data(list(pool.encoded), Path(tmp) / "input_data.json", ENCODED_IMAGE.name)
                rows += pa.sweep(tool, url=backend.url, model=backend.model, input_data=data,
                                 concurrencies=concurrencies, measurement_ms=int(seconds * 1000 / 2), work_dir=tmp,
                                 stability_percentage=pa_stability_percentage)
        except pa.PerfAnalyzerUnavailable as err:
            log.warning("load sweep: perf_analyzer unavailable (%s); measuring with banet.client only", err)
            rows += [{"tool": "perf_analyzer", "concurrency": c, "skipped": str(err)} for c in concurrencies]
    else:
        rows += [{"tool": "perf_analyzer", "concurrency": c, "skipped": "--no-perf-analyzer"} for c in concurrencies]
    rows += client_sweep(backend, pool, concurrencies, seconds=seconds)
    return rows
