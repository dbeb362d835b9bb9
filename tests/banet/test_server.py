"""banet-serve / TritonServer: clean start and stop, taken ports, models that fail to load."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from banet import spec

pytestmark = [pytest.mark.needs_triton]


def _serve(repo, *ports: int, extra=()) -> subprocess.Popen:
    grpc, http = ports
    cmd = [sys.executable, "-m", "banet.cli.serve", "--repository", str(repo), "--grpc-port", str(grpc),
           "--http-port", str(http), "--no-metrics", "-q", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_cli_serves_then_stops_cleanly_on_sigterm(model_repository):
    from banet.client import TritonSegmenter
    from banet.server import free_port

    grpc, http = free_port(), free_port()
    proc = _serve(model_repository, grpc, http)
    try:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("banet-serve: ready"):
                break
        assert any(line.startswith("banet-serve: ready") for line in lines), (lines, proc.poll())
        endpoints = "".join(lines) + proc.stdout.readline() + proc.stdout.readline()
        assert f"127.0.0.1:{grpc}" in endpoints and f"http://127.0.0.1:{http}" in endpoints
        seg = TritonSegmenter(f"127.0.0.1:{grpc}", timeout_s=60)
        assert seg.predict(np.zeros((16, 24, 3), np.uint8)).mask.shape == (16, 24)
        seg.close()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_taken_port_is_a_clear_error(model_repository):
    from banet.server import PortInUseError, TritonServer, free_port

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        taken = sock.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"gRPC port {taken} on 127.0.0.1 is already in use"):
            TritonServer(model_repository, grpc_port=taken, http_port=free_port(), metrics_port=None).start()
        proc = _serve(model_repository, free_port(), taken)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and f"HTTP port {taken}" in err


def test_model_that_fails_to_load_shows_tritons_reason_and_exits_nonzero(model_repository, tmp_path):
    from banet.server import ServerError, free_port

    from triton_helpers import start_server

    broken = tmp_path / "broken"
    shutil.copytree(model_repository, broken)
    (broken / spec.NETWORK_MODEL / "1" / "model.onnx").write_bytes(b"this is not an ONNX graph")
    # Triton's own status after a failed load is 1, but it has segfaulted while shutting down (CI, 2026-12-03):
    # the reasons must be shown and banet-serve must exit 1 whichever way Triton went.
    with pytest.raises(ServerError, match=r"(?s)(exited with status 1|was killed by SIG[A-Z]+ \(status -\d+\)) "
                                          r"before it was ready.*failed to load 'banet_model'"):
        start_server(broken)
    proc = _serve(broken, free_port(), free_port())
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "failed to load 'banet_model'" in err and "model.onnx" in err


def test_missing_repository_is_named(tmp_path, capsys):
    from banet.cli.serve import main

    missing = tmp_path / "nope"
    assert main(["--repository", str(missing)]) == 1
    assert f"model repository not found: {missing}" in capsys.readouterr().err
    assert not missing.exists()  # nothing created in its place


def test_restricted_protocols_need_the_admin_header(model_repository):
    """The flag form used in deploy/k8s and docs/serving.md really restricts the named gRPC/HTTP APIs."""
    import urllib.error
    import urllib.request

    from banet.client import TritonSegmenter
    from tritonclient.utils import InferenceServerException

    from triton_helpers import start_server

    flags = ("--grpc-restricted-protocol=model-repository,model-config,statistics:admin-key=s3cret",
             "--http-restricted-api=model-repository,model-config,statistics:admin-key=s3cret")
    server = start_server(model_repository, extra_args=flags)
    seg = TritonSegmenter(server.grpc_url, timeout_s=60)
    try:
        assert seg.predict(np.zeros((8, 8, 3), np.uint8)).mask.shape == (8, 8)  # inference stays open
        with pytest.raises(InferenceServerException, match="restricted, expecting header .triton-grpc-protocol-admin-key"):
            seg.client.get_inference_statistics()
        assert seg.client.get_inference_statistics(headers={"triton-grpc-protocol-admin-key": "s3cret"}) is not None
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{server.http_url}/v2/models/{spec.ENSEMBLE_MODEL}/config", timeout=10)
        request = urllib.request.Request(f"{server.http_url}/v2/models/{spec.ENSEMBLE_MODEL}/config",
                                         headers={"admin-key": "s3cret"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.status == 200
    finally:
        seg.close()
        server.stop()


def _children(pid: int) -> list[int]:
    from pathlib import Path

    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def _group_members(pgid: int) -> list[int]:
    """Live processes of the process group ``pgid`` (tritonserver runs in its own: its stubs join it)."""
    from pathlib import Path

    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    from pathlib import Path

    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_cli_stops_on_sigterm_while_models_are_still_loading(model_repository, tmp_path):
    # a model whose initialize never finishes keeps the server not-ready: SIGTERM must still stop
    # banet-serve promptly and take its tritonserver with it (not wait out --startup-timeout)
    from banet.server import free_port

    repo = tmp_path / "slow_repo"
    shutil.copytree(model_repository, repo)
    slow = repo / "slow_to_load"
    (slow / "1").mkdir(parents=True)
    (slow / "config.pbtxt").write_text(
        'name: "slow_to_load"\nbackend: "python"\nmax_batch_size: 0\n'
        'input [{ name: "X" data_type: TYPE_FP32 dims: [ 1 ] }]\n'
        'output [{ name: "Y" data_type: TYPE_FP32 dims: [ 1 ] }]\n')
    loading = tmp_path / "initialize_started"  # the model writes it when its load has begun
    (slow / "1" / "model.py").write_text(
        f"import pathlib\nimport time\n\n\nclass TritonPythonModel:\n    def initialize(self, args):\n"
        f"        pathlib.Path({str(loading)!r}).touch()\n        time.sleep(600)\n\n"
        "    def execute(self, requests):\n        return []\n")
    proc = _serve(repo, free_port(), free_port(), extra=("--startup-timeout", "600"))
    servers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not servers and proc.poll() is None:
            time.sleep(0.5)
            servers = _children(proc.pid)
        assert servers, "banet-serve started no tritonserver"
        # SIGTERM only once a model load is under way (its Python-backend stub exists), not after a guess
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not loading.exists() and proc.poll() is None:
            time.sleep(0.2)
        assert loading.exists(), (f"slow_to_load's initialize did not start within 180 s "
                                  f"(banet-serve {'exited ' + str(proc.returncode) if proc.poll() is not None else 'running'})")
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        out, err = proc.communicate(timeout=90)
        assert time.monotonic() - started < 60, "SIGTERM waited for the startup timeout"
        assert proc.returncode == 0, err
        assert "stopped" in out
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(pid) for pid in servers):
            time.sleep(0.5)
        assert not any(_alive(pid) for pid in servers), "tritonserver left running"
        # nor any Python-backend stub of the model that was still loading (they outlived SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_group_members(pid) for pid in servers):
            time.sleep(0.5)
        assert not any(_group_members(pid) for pid in servers), "Python-backend stubs left running"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in servers:  # never leave the server (or its stubs) of a failed run behind: its own session
            if _alive(pid) or _group_members(pid):
                os.killpg(pid, signal.SIGKILL)


def test_exit_words_name_the_signal_triton_died_of():
    from banet.server import exit_words

    assert exit_words(1) == "exited with status 1"
    assert exit_words(-11) == "was killed by SIGSEGV (status -11)"
    assert exit_words(-9) == "was killed by SIGKILL (status -9)"
    assert exit_words(-999) == "exited with status -999"  # no such signal: the number as it is
    assert exit_words(None) == "exited with status None"
