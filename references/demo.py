"""`make demo`: the whole pipeline end to end, as a thin script over the project's CLIs.

Each step runs one console script (``banet-synth``, ``banet-train``, ``banet-eval``,
``banet-export``, ``banet-serve``, ``banet-client``, ``banet-bench``) exactly as a user would type
it; the demo adds nothing but the order. A failing step stops the demo with that step's own
error output and a non-zero exit status, and the Triton server is always stopped.

    python -m references.demo --out demo_out [--data ../shared/data/kvasir-seg]

The bench's load sweep runs Triton's ``perf_analyzer``, which needs Debian's ``libb64-0d``: the demo
installs it first where it may (root with apt-get; ``--no-apt`` to leave the system alone), else says
how, and the sweep then measures with ``banet.client`` only, which the demo's last lines say.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from banet.spec import DEFAULT_HOST

BIN = Path(sys.executable).parent
Step = list[str] | Callable[[], list[str]] | str
"""A command line, a function that builds one when the step runs, or START_SERVER / STOP_SERVER."""


LIBB64_SONAME = "libb64.so.0d"
"""The shared library the ``perf_analyzer`` binary links (bench/perf_analyzer.py)."""
LIBB64_PACKAGE = "libb64-0d"
"""Debian's package of it (``.ci/run`` installs the same)."""


class StepFailed(RuntimeError):
    pass


def libb64_present() -> bool:
    """``libb64.so.0d`` is in the dynamic linker's cache (``ldconfig -p``), as ``.ci/run`` checks."""
    ldconfig = shutil.which("ldconfig") or next((p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if Path(p).exists()), None)
    if ldconfig is None:
        return False
    out = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, timeout=30).stdout
    return LIBB64_SONAME in out


def ensure_libb64(*, allow_apt: bool = True, present: Callable[[], bool] = libb64_present,
                  is_root: Callable[[], bool] = lambda: os.geteuid() == 0,
                  apt_get: Callable[[], str | None] = lambda: shutil.which("apt-get"),
                  run: Callable[[list[str]], int] = lambda argv: subprocess.run(argv).returncode) -> str | None:
    """Install Debian's ``libb64-0d`` for perf_analyzer where the user may (root with apt-get).

    Returns None when the library is there (found or installed), else the line to show: why it is
    missing and the command that installs it. Never fails the demo: without it the load sweep
    measures with banet.client only.
    """
    if present():
        return None
    how = f"apt-get install {LIBB64_PACKAGE}" if is_root() else f"sudo apt-get install {LIBB64_PACKAGE}"
    if not allow_apt:
        return f"{LIBB64_SONAME} is missing and --no-apt was given; install it with: {how}"
    apt = apt_get()
    if apt is None or not is_root():
        why = "no apt-get here" if apt is None else "not root"
        return f"{LIBB64_SONAME} is missing and the demo cannot install it ({why}); install it with: {how}"
    for argv in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", LIBB64_PACKAGE]):
        print(f"$ {shlex.join(argv)}", flush=True)
        status = run(argv)
        if status != 0:
            return f"{shlex.join(argv)} failed with exit status {status}; install {LIBB64_PACKAGE} by hand: {how}"
    return None if present() else f"{LIBB64_PACKAGE} installed but {LIBB64_SONAME} is still not found; check: ldconfig -p"


@dataclass(frozen=True)
class Scale:
    """How big each step runs: the demo's own (``full``) or a seconds-long ``smoke`` run of every
    step (a check of the install and the pipeline, not of the model; the test suite uses it)."""

    synth_count: int
    synth_size: int
    size: int
    epochs_synthetic: int
    epochs_real: int
    batch_size: int
    calib_count: int
    bench_iters: int
    bench_parity_images: int
    bench_pool_images: int
    bench_batch_sizes: str
    bench_concurrency: str
    load_seconds: float
    perf_analyzer: bool
    bench_backends: tuple[str, ...] = ()  # banet-bench --backends prefixes; () = all


SCALES = {
    "full": Scale(synth_count=160, synth_size=160, size=128, epochs_synthetic=12, epochs_real=10, batch_size=8,
                  calib_count=64, bench_iters=10, bench_parity_images=32, bench_pool_images=32,
                  bench_batch_sizes="1,8", bench_concurrency="1,2,4", load_seconds=3, perf_analyzer=True),
    "smoke": Scale(synth_count=24, synth_size=64, size=64, epochs_synthetic=1, epochs_real=1, batch_size=4,
                   calib_count=8, bench_iters=2, bench_parity_images=2, bench_pool_images=2,
                   bench_batch_sizes="1", bench_concurrency="1", load_seconds=1, perf_analyzer=False,
                   bench_backends=("torch-fp32@", "ort-", "triton")),
}


def _banner(text: str) -> None:
    line = "=" * 78
    print(f"\n{line}\n{text}\n{line}", flush=True)


def run_step(number: int, title: str, argv: list[str]) -> None:
    """Run one CLI as a user would; stop the demo with its exit status if it fails."""
    _banner(f"[{number}] {title}\n$ {shlex.join(argv)}")
    started = time.monotonic()
    result = subprocess.run(argv)
    if result.returncode != 0:
        raise StepFailed(f"step {number} ({title}) failed with exit status {result.returncode}: "
                         f"{shlex.join(argv)}")
    print(f"[{number}] done in {time.monotonic() - started:.0f} s", flush=True)


def cli(name: str) -> str:
    path = BIN / name
    return str(path) if path.exists() else name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default: demo_out)")
    parser.add_argument("--data", type=Path, default=None,
                        help="dataset folder (images/ + masks/ + splits*.csv or train_/val_/test_ prefixes); "
                             "default: a synthetic set generated into OUT/data")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: 10 on real data, 12 on the synthetic set; a few minutes on 2 CPU cores)")
    parser.add_argument("--train", action="store_true",
                        help="train even when models/ holds a released checkpoint of this data set (banet-release)")
    parser.add_argument("--smoke", action="store_true",
                        help="every step at its smallest (24 synthetic 64 px images, 1 epoch, 2 timed calls): "
                             "checks the install and the pipeline in about a minute, not the model")
    parser.add_argument("--grpc-port", type=int, default=8101)
    parser.add_argument("--http-port", type=int, default=8100)
    parser.add_argument("--metrics-port", type=int, default=8102)
    parser.add_argument("--no-apt", action="store_true",
                        help=f"do not apt-get install {LIBB64_PACKAGE} (perf_analyzer's library) when it is missing")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    if out.exists() and any(out.iterdir()):
        parser.error(f"{out} exists and is not empty; choose another --out or remove it (make clean-demo)")
    out.mkdir(parents=True, exist_ok=True)
    steps = _plan(args, out)
    if SCALES["smoke" if args.smoke else "full"].perf_analyzer:
        _banner(f"[0] perf_analyzer (the bench's Triton load generator) needs Debian's {LIBB64_PACKAGE}")
        missing = ensure_libb64(allow_apt=not args.no_apt)
        print(f"[0] {LIBB64_SONAME}: present" if missing is None else
              f"[0] {missing}\n[0] the load sweep will measure with banet.client only (no perf_analyzer rows)", flush=True)
    server = None
    try:
        for number, (title, command) in enumerate(steps, start=1):
            if command == "START_SERVER":
                server = _start_server(number, args, out)
                continue
            if command == "STOP_SERVER":
                _stop_server(number, server)
                server = None
                continue
            run_step(number, title, command() if callable(command) else command)
    except StepFailed as err:
        print(f"\ndemo stopped: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo interrupted", file=sys.stderr)
        return 130
    finally:
        if server is not None:
            _stop_server(0, server)
    _summary(out, getattr(args, "released", None))
    return 0


def _plan(args, out: Path) -> list[tuple[str, Step]]:
    scale = SCALES["smoke" if getattr(args, "smoke", False) else "full"]
    data = args.data.resolve() if args.data else out / "data"
    synthetic = args.data is None
    epochs = args.epochs or (scale.epochs_synthetic if synthetic else scale.epochs_real)
    run, export_dir, repo = out / "run", out / "export", out / "model_repository"
    ckpt = run / "best.pt"
    steps: list[tuple[str, Step]] = []
    if synthetic:
        steps.append(("Generate a synthetic lesion dataset (no --data given)",
                      [cli("banet-synth"), str(data), "--count", str(scale.synth_count), "--size",
                       str(scale.synth_size), "--seed", "0"]))
    released = None if synthetic or getattr(args, "train", False) or getattr(args, "smoke", False) \
        else released_model(data)
    if released is not None:
        ckpt = released
        args.released = released
        print(f"using the released model {released} (trained on {data.name}; its card: "
              f"{released.with_suffix('.md')}); --train trains a new one instead")
    else:
        steps.append(
            (f"Train a tiny BA-Net (ResNet-18 reading, {scale.size} px) on the train split",
             [cli("banet-train"), "--data", str(data), "--out", str(run), "--preset", "tiny", "--size", str(scale.size),
              "--epochs", str(epochs), "--lr", "1e-3", "--batch-size", str(scale.batch_size), "--seed", "0"]))
    steps += [
        ("Evaluate on the test split (AC/DI/JA/SE/SP, overlays)",
         [cli("banet-eval"), str(ckpt), "--data", str(data), "--split", "test", "--baselines",
          "--out-dir", str(out / "eval"), "--save-overlays", "--json", str(out / "eval" / "metrics.json")]),
        ("Export FP32/FP16/INT8 ONNX with accuracy gates and a Triton model repository",
         [cli("banet-export"), "--checkpoint", str(ckpt), "--out", str(export_dir), "--fp16", "--int8",
          "--calib-data", f"{data}:train", "--calib-count", str(scale.calib_count), "--parity-data", f"{data}:test",
          "--repository", str(repo)]),
        ("Start the Triton server (embedded tritonserver, loopback only)", "START_SERVER"),
        # a callable: the test images are listed when the step runs (the data may not exist yet)
        ("Segment the test images through Triton over gRPC (masks, overlays, CSV)",
         lambda: [cli("banet-client"), *_test_images(data), "--url", f"{DEFAULT_HOST}:{args.grpc_port}",
                  "--out", str(out / "client"), "--concurrency", "4"]),
        ("Benchmark every backend (latency ratios, parity, plots)",
         [cli("banet-bench"), "--checkpoint", str(ckpt), "--artifacts", str(export_dir),
          "--url", f"{DEFAULT_HOST}:{args.grpc_port}", "--data", f"{data}:test", "--batch-sizes",
          scale.bench_batch_sizes, "--iters", str(scale.bench_iters), "--parity-images", str(scale.bench_parity_images),
          "--pool-images", str(scale.bench_pool_images), "--load-seconds", str(scale.load_seconds),
          "--concurrency", scale.bench_concurrency,
          "--triton-precision", "fp16",  # banet-export promotes the FP16 artifact when --fp16 is given
          *([] if scale.perf_analyzer else ["--no-perf-analyzer"]),
          *(["--backends", *scale.bench_backends] if scale.bench_backends else []),
          "--out", str(out / "bench"), "--tag", "demo"]),
        ("Stop the Triton server", "STOP_SERVER"),
    ]
    return steps


MODELS = Path(__file__).resolve().parent.parent / "models"
"""Released checkpoints (``banet-release``), committed with their model cards."""


def released_model(data: Path) -> Path | None:
    """The released checkpoint trained on a data set of ``data``'s folder name (e.g. ``kvasir-seg``), if any."""
    from banet.checkpoint import CheckpointError, load_checkpoint

    for path in sorted(MODELS.glob("*.pt")):
        try:
            trained_on = (load_checkpoint(path).get("train_config") or {}).get("data")
        except CheckpointError:
            continue
        if trained_on and Path(trained_on).name == data.name:
            return path
    return None


def _test_images(data: Path) -> list[str]:
    """The test split's image files."""
    from banet.data.pairs import find_pairs

    return [str(p.image) for p in find_pairs(data, "test")]


def _start_server(number: int, args, out: Path) -> subprocess.Popen:
    argv = [cli("banet-serve"), "--repository", str(out / "model_repository"), "--grpc-port",
            str(args.grpc_port), "--http-port", str(args.http_port), "--metrics-port",
            str(args.metrics_port), "--quiet"]
    _banner(f"[{number}] Start the Triton server (embedded tritonserver, loopback only)\n$ {shlex.join(argv)} &")
    from banet.server import port_free

    for name, port in (("gRPC", args.grpc_port), ("HTTP", args.http_port), ("metrics", args.metrics_port)):
        # the readiness poll below would take another server on these ports for ours
        if not port_free(DEFAULT_HOST, port):
            raise StepFailed(f"step {number}: {name} port {port} on {DEFAULT_HOST} is already in use; "
                             f"choose another with --{name.lower()}-port")
    log_path = out / "tritonserver.log"
    with open(log_path, "wb") as log_file:
        server = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT)
    ready = f"http://{DEFAULT_HOST}:{args.http_port}/v2/health/ready"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.stderr.write(log_path.read_text(errors="replace")[-4000:])
            raise StepFailed(f"step {number}: banet-serve exited with status {server.returncode} (log: {log_path})")
        try:
            with urllib.request.urlopen(ready, timeout=2) as response:
                if response.status == 200:
                    print(f"[{number}] server ready: gRPC {DEFAULT_HOST}:{args.grpc_port}, "
                          f"HTTP {DEFAULT_HOST}:{args.http_port} (log: {log_path})", flush=True)
                    return server
        except OSError:
            pass
        time.sleep(1)
    _stop_server(number, server)
    raise StepFailed(f"step {number}: the server was not ready within 300 s (log: {log_path})")


def _stop_server(number: int, server: subprocess.Popen | None) -> None:
    if server is None or server.poll() is not None:
        return
    server.send_signal(signal.SIGINT)
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def _summary(out: Path, released: Path | None = None) -> None:
    _banner("Demo finished. Where everything went:")
    run = out / "run"
    rows = [
        ("training run (checkpoints, config, curves.png)", run) if released is None else
        ("model (released with its card; no training in this demo)", released),
        ("evaluation (metrics.json, overlays)", out / "eval"),
        ("export (ONNX FP32/FP16/INT8, manifest.json)", out / "export"),
        ("Triton model repository", out / "model_repository"),
        ("client output (masks/, overlays/, results.csv)", out / "client"),
        ("bench (JSON, Markdown, plots)", out / "bench"),
        ("Triton server log", out / "tritonserver.log"),
    ]
    for label, path in rows:
        print(f"  {label:<50} {path}")
    line = _load_sweep_line(out / "bench")
    if line:
        print(line)
    print("The server has been stopped; nothing is left running.")


def _load_sweep_line(bench_dir: Path) -> str | None:
    """One line on where the bench's load sweep came from, when perf_analyzer did not run there."""
    reasons = set()
    for path in sorted(bench_dir.glob("*_demo.json")):
        rows = json.loads(path.read_text()).get("load") or []
        reasons |= {r["skipped"] for r in rows if r.get("tool") == "perf_analyzer" and r.get("skipped")}
    if not reasons:
        return None
    return (f"Load sweep: perf_analyzer did not run ({'; '.join(sorted(reasons))}); "
            "its figures come from banet.client only.")


if __name__ == "__main__":
    sys.exit(main())
