"""Triton's own load generator, ``perf_analyzer``: set it up, feed it real images, sweep concurrency.

The binary comes from the ``tritonclient==2.40.0`` manylinux1 wheel (its data scripts carry
``bin/perf_analyzer``; newer wheels do not), with ``libcudart.so.12`` from the
``nvidia-cuda-runtime-cu12`` wheel. Both are fetched with ``pip download`` (the ordinary client)
into a git-ignored cache folder and only the two files are extracted, so the project's own
``tritonclient`` stays as it is. The binary also needs ``libb64.so.0d`` (Debian: ``apt-get install
libb64-0d``). Set up from the Makefile or CI with::

    python -m bench.perf_analyzer --setup          # prints the binary path, or why it cannot run
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CLIENT_WHEEL = "tritonclient==2.40.0"
CUDART_WHEEL = "nvidia-cuda-runtime-cu12"
DEFAULT_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "perf_analyzer"


class PerfAnalyzerUnavailable(RuntimeError):
    """perf_analyzer cannot be set up or run here; the message says why and what to install."""


@dataclass(frozen=True)
class PerfAnalyzer:
    binary: Path
    env: dict

    def version(self) -> str:
        out = subprocess.run([str(self.binary), "--version"], env=self.env, capture_output=True, text=True, timeout=30)
        return (out.stdout + out.stderr).strip().splitlines()[0] if (out.stdout + out.stderr).strip() else "?"


def _pip_download(requirement: str, dest: Path, platform: str | None = None) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(dest), requirement]
    if platform:
        cmd[4:4] = ["--platform", platform]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise PerfAnalyzerUnavailable(f"pip download {requirement} failed: {result.stderr.strip()[-400:]}")
    name = requirement.split("==")[0].replace("-", "_")
    wheels = sorted(dest.glob(f"{name}-*.whl"))
    if not wheels:
        raise PerfAnalyzerUnavailable(f"pip download {requirement} left no wheel in {dest}")
    return wheels[-1]


def _extract(wheel: Path, suffix: str, target: Path) -> Path:
    with zipfile.ZipFile(wheel) as zf:
        member = next((n for n in zf.namelist() if n.endswith(suffix)), None)
        if member is None:
            raise PerfAnalyzerUnavailable(f"{wheel.name} has no {suffix}")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        with zf.open(member) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        tmp.replace(target)
    return target


def _missing_libraries(binary: Path, env: dict) -> list[str]:
    out = subprocess.run(["ldd", str(binary)], env=env, capture_output=True, text=True, timeout=30).stdout
    return [line.split()[0] for line in out.splitlines() if "not found" in line]


def setup(cache_dir: str | Path = DEFAULT_CACHE, *, download: bool = True) -> PerfAnalyzer:
    """Return a runnable perf_analyzer (fetching it into ``cache_dir`` when ``download``).

    Raises :class:`PerfAnalyzerUnavailable` naming what is missing.
    """
    cache = Path(cache_dir)
    binary, cudart = cache / "bin" / "perf_analyzer", cache / "lib" / "libcudart.so.12"
    if not (binary.is_file() and cudart.is_file()):
        if not download:
            raise PerfAnalyzerUnavailable(f"perf_analyzer not set up in {cache} (run: python -m bench.perf_analyzer --setup)")
        cache.mkdir(parents=True, exist_ok=True)
        if not binary.is_file():
            wheel = _pip_download(CLIENT_WHEEL, cache, platform="manylinux1_x86_64")
            _extract(wheel, "/bin/perf_analyzer", binary)
            binary.chmod(0o755)
        if not cudart.is_file():
            _extract(_pip_download(CUDART_WHEEL, cache), "/libcudart.so.12", cudart)
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(cudart.parent), env.get("LD_LIBRARY_PATH")) if p)
    missing = _missing_libraries(binary, env)
    if missing:
        hint = " (Debian: apt-get install libb64-0d)" if any("b64" in m for m in missing) else ""
        raise PerfAnalyzerUnavailable(f"{binary} needs missing shared libraries {missing}{hint}")
    return PerfAnalyzer(binary, env)


def write_input_data(encoded: list[bytes], path: str | Path, input_name: str) -> Path:
    """perf_analyzer ``--input-data`` JSON: one request per real encoded image (BYTES, base64).

    perf_analyzer sends ``b64`` content as the raw tensor bytes, and a BYTES tensor's wire format is
    each element prefixed by its length (uint32, little endian), so the prefix is part of the payload.
    """
    if not encoded:
        raise ValueError("no encoded images to write as perf_analyzer input data")
    data = [{input_name: {"content": {"b64": base64.b64encode(serialize_bytes_element(raw)).decode("ascii")},
                          "shape": [1]}}
            for raw in encoded]
    path = Path(path)
    path.write_text(json.dumps({"data": data}))
    return path


def serialize_bytes_element(raw: bytes) -> bytes:
    """One element of a Triton BYTES tensor as it travels: 4-byte little-endian length, then the bytes."""
    return len(raw).to_bytes(4, "little") + raw


LATENCY_PARTS = ("Client Send", "Network+Server Send/Recv", "Server Queue", "Server Compute Input",
                 "Server Compute Infer", "Server Compute Output", "Client Recv")
"""The CSV's components of the average client latency (us); their sum is the mean when 'Avg latency' is absent."""


def parse_csv(path: str | Path) -> dict:
    """The first row of perf_analyzer's ``-f`` CSV: throughput and latencies (us -> ms)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{path}: perf_analyzer wrote no result rows")
    row = rows[0]
    ms = lambda key: float(row[key]) / 1000.0  # noqa: E731
    mean = ms("Avg latency") if row.get("Avg latency") else sum(ms(k) for k in LATENCY_PARTS)
    return {"concurrency": int(row["Concurrency"]), "throughput": float(row["Inferences/Second"]),
            "p50_ms": ms("p50 latency"), "p90_ms": ms("p90 latency"), "p99_ms": ms("p99 latency"),
            "mean_ms": mean, "server_compute_infer_ms": ms("Server Compute Infer"),
            "server_queue_ms": ms("Server Queue")}


def request_count(stdout: str) -> int | None:
    """The client's request count in the measurement window, from perf_analyzer's report."""
    match = re.search(r"Client:\s*\n\s*Request count:\s*(\d+)", stdout)
    return int(match.group(1)) if match else None


def sweep(pa: PerfAnalyzer, *, url: str, model: str, input_data: Path, concurrencies=(1, 2, 4, 8),
          measurement_ms: int = 3000, work_dir: str | Path, timeout_s: int = 300,
          stability_percentage: float = 50, request_parameters: dict[str, str] | None = None) -> list[dict]:
    """One perf_analyzer run per concurrency level over gRPC; a row each (skipped rows say why).

    ``stability_percentage``: how far apart perf_analyzer's last measurement windows may be for it to
    report (it gives up after 4); a functional check on loaded cores passes a large value.
    ``request_parameters``: string parameters sent with every request (``--request-parameter name:value:string``;
    a value may not hold a colon)."""
    extra = []
    for key, value in (request_parameters or {}).items():
        if ":" in key or ":" in value:
            raise ValueError(f"perf_analyzer request parameter {key}={value!r}: no colons allowed")
        extra += ["--request-parameter", f"{key}:{value}:string"]
    rows = []
    for c in concurrencies:
        out_csv = Path(work_dir) / f"perf_analyzer_c{c}.csv"
        cmd = [str(pa.binary), "-m", model, "-i", "grpc", "-u", url, "--input-data", str(input_data),
               "--concurrency-range", f"{c}:{c}", "--measurement-interval", str(measurement_ms),
               "--stability-percentage", f"{stability_percentage:g}", "--max-trials", "4", "-f", str(out_csv), *extra]
        try:
            result = subprocess.run(cmd, env=pa.env, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            rows.append({"tool": "perf_analyzer", "concurrency": c, "skipped": f"timed out after {timeout_s} s"})
            continue
        if result.returncode != 0 or not out_csv.is_file():
            tail = (result.stdout + result.stderr).strip()[-300:].replace("\n", " ")
            rows.append({"tool": "perf_analyzer", "concurrency": c,
                         "skipped": f"perf_analyzer exit {result.returncode}: {tail}"})
            continue
        rows.append({"tool": "perf_analyzer", **parse_csv(out_csv), "count": request_count(result.stdout), "skipped": None,
                     "command": " ".join(cmd[1:])})
        log.info("perf_analyzer concurrency %d: %.1f infer/s", c, rows[-1]["throughput"])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Set up Triton's perf_analyzer for the bench.")
    parser.add_argument("--setup", action="store_true", help="download and extract it if missing")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args(argv)
    try:
        pa = setup(args.cache, download=args.setup)
    except PerfAnalyzerUnavailable as err:
        print(f"perf_analyzer unavailable: {err}", file=sys.stderr)
        return 1
    print(pa.binary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
