"""`make demo`: the whole pipeline end to end, as a thin script over the project's CLIs.

Each step runs one console script (``banet-synth``, ``banet-train``, ``banet-eval``,
``banet-export``, ``banet-serve``, ``banet-client``, ``banet-bench``) exactly as a user would type
it; the demo adds nothing but the order. A failing step stops the demo with that step's own
error output and a non-zero exit status, and the Triton server is always stopped.

    python -m bench.demo --out demo_out [--data ../shared/data/kvasir-seg]
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from banet.spec import DEFAULT_HOST

BIN = Path(sys.executable).parent


class StepFailed(RuntimeError):
    pass


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
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: sized for ~5 min on 2 CPU cores)")
    parser.add_argument("--grpc-port", type=int, default=8101)
    parser.add_argument("--http-port", type=int, default=8100)
    parser.add_argument("--metrics-port", type=int, default=8102)
    args = parser.parse_args(argv)
    out = args.out.resolve()
    if out.exists() and any(out.iterdir()):
        parser.error(f"{out} exists and is not empty; choose another --out or remove it (make clean-demo)")
    out.mkdir(parents=True, exist_ok=True)
    steps = _plan(args, out)
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
            run_step(number, title, command)
    except StepFailed as err:
        print(f"\ndemo stopped: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo interrupted", file=sys.stderr)
        return 130
    finally:
        if server is not None:
            _stop_server(0, server)
    _summary(out)
    return 0


def _plan(args, out: Path) -> list[tuple[str, list[str] | str]]:
    raise NotImplementedError  # filled in once the CLIs land


def _start_server(number: int, args, out: Path) -> subprocess.Popen:
    raise NotImplementedError


def _stop_server(number: int, server: subprocess.Popen | None) -> None:
    if server is None or server.poll() is not None:
        return
    server.send_signal(signal.SIGINT)
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def _summary(out: Path) -> None:
    pass


if __name__ == "__main__":
    sys.exit(main())
