"""bench.demo's server step: it must talk to the server it started, never to one already there."""

from __future__ import annotations

import argparse
import http.server
import threading

import pytest


class _Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_server_step_refuses_a_port_already_answering(tmp_path):
    from banet.server import free_port
    from bench.demo import StepFailed, _start_server

    other = http.server.HTTPServer(("127.0.0.1", 0), _Ready)  # some other server, ready on the HTTP port
    thread = threading.Thread(target=other.serve_forever, daemon=True)
    thread.start()
    try:
        args = argparse.Namespace(grpc_port=free_port(), http_port=other.server_address[1], metrics_port=free_port())
        (tmp_path / "model_repository").mkdir()
        with pytest.raises(StepFailed, match=f"port {args.http_port}"):
            server = _start_server(1, args, tmp_path)
            server.kill()
            server.wait()
    finally:
        other.shutdown()
        other.server_close()
