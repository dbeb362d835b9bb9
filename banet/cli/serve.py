"""``banet-serve``: run a real Triton server on a BA-Net model repository.

    banet-serve --repository model_repository            # written by banet-export --repository
    python -m export.repository --onnx model.onnx --out model_repository   # from an existing ONNX file
    banet-serve --repository R --host 0.0.0.0             # expose deliberately (default: 127.0.0.1)
    banet-serve --repository R --triton-arg=--grpc-restricted-protocol=model-repository,admin-key=SECRET

Uses ``tritonserver`` from PATH or the one in nvidia-pytriton. Waits until every model is ready,
prints the endpoints, forwards Triton's log, and stops cleanly on Ctrl-C / SIGTERM (exit 0). A
taken port, a model that fails to load (Triton's reason is shown) or a server that dies exits 1.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from banet import spec


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="banet-serve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repository", type=Path, required=True, help="Triton model repository folder")
    p.add_argument("--host", default=spec.DEFAULT_HOST,
                   help="address to bind gRPC/HTTP/metrics to (default %(default)s; 0.0.0.0 exposes the server)")
    p.add_argument("--grpc-port", type=int, default=spec.GRPC_PORT)
    p.add_argument("--http-port", type=int, default=spec.HTTP_PORT)
    p.add_argument("--metrics-port", type=int, default=spec.METRICS_PORT)
    p.add_argument("--no-metrics", action="store_true", help="disable the Prometheus metrics endpoint")
    p.add_argument("--startup-timeout", type=float, default=300.0, help="seconds to wait for the models")
    p.add_argument("--triton-arg", action="append", default=[], metavar="ARG",
                   help="extra tritonserver argument, repeatable (write it as --triton-arg=--flag=value)")
    p.add_argument("--log-verbose", type=int, default=0, help="Triton's --log-verbose level")
    p.add_argument("-q", "--quiet", action="store_true", help="do not forward Triton's info log lines")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.quiet:
        logging.getLogger("banet.server.tritonserver").setLevel(logging.WARNING)
    from banet.server import ServerError, TritonServer, exit_words

    repository = args.repository
    if not repository.is_dir():
        print(f"banet-serve: model repository not found: {args.repository}", file=sys.stderr)
        return 1

    server = TritonServer(repository, host=args.host, grpc_port=args.grpc_port, http_port=args.http_port,
                          metrics_port=None if args.no_metrics else args.metrics_port,
                          extra_args=tuple(args.triton_arg), startup_timeout_s=args.startup_timeout,
                          log_verbose=args.log_verbose)
    stop = threading.Event()
    starting = threading.Event()
    starting.set()
    received: list[int] = []

    def on_signal(signum, _frame) -> None:
        received.append(signum)
        stop.set()
        if starting.is_set() and len(received) == 1:
            # still waiting for the models: interrupt the wait (TritonServer.start stops the server)
            # rather than ignore the signal until --startup-timeout
            raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    try:
        try:
            server.start()
            starting.clear()
        except ServerError as err:
            print(f"banet-serve: {err}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            starting.clear()
            code = server.stop()
            print(f"banet-serve: stopped before the models were ready "
                  f"(signal {received[0] if received else '?'}, tritonserver status {code})", flush=True)
            return 0
        if stop.is_set():
            server.stop()
            return 0
        print(f"banet-serve: ready ({repository})\n"
              f"  gRPC     {server.grpc_url}\n"
              f"  HTTP     {server.http_url}   health: {server.http_url}/v2/health/ready\n"
              f"  metrics  {server.metrics_url or 'off'}\n"
              f"  ensemble {spec.ENSEMBLE_MODEL}   (Ctrl-C stops)", flush=True)
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            logging.getLogger("banet.serve").warning("listening on %s: reachable from other machines; "
                                                     "see docs/serving.md (security)", args.host)
        while not stop.wait(0.5):
            if server.process is not None and server.process.poll() is not None:
                reasons = server.reasons() or list(server.log_tail)[-10:]
                print(f"banet-serve: tritonserver {exit_words(server.process.returncode)} unexpectedly:\n"
                      + "\n".join(reasons), file=sys.stderr)
                return 1
        code = server.stop()
        print(f"banet-serve: stopped (signal {received[0] if received else '?'}, tritonserver status {code})", flush=True)
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
