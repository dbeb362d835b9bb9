"""references.demo (`make demo`): every step end to end at its smallest (``--smoke``), and a server step
that talks to the server it started, never to one already there."""

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
    from references.demo import StepFailed, _start_server

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


@pytest.mark.needs_triton
def test_smoke_demo_runs_every_step_and_stops_the_server(tmp_path, capsys):
    import csv
    import json

    from banet.server import free_port, port_free
    from references.demo import main

    out = tmp_path / "demo"
    ports = [free_port() for _ in range(3)]
    assert main(["--smoke", "--out", str(out), "--grpc-port", str(ports[0]), "--http-port", str(ports[1]),
                 "--metrics-port", str(ports[2])]) == 0
    assert "nothing is left running" in capsys.readouterr().out
    assert all(port_free("127.0.0.1", port) for port in ports)  # the server was stopped

    with open(out / "data" / "splits.csv", newline="") as fh:
        test_names = sorted(r["name"] for r in csv.DictReader(fh) if r["split"] == "test")
    assert test_names
    with open(out / "client" / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))  # every test image went through Triton and came back
    assert sorted(r["image"].rsplit("/", 1)[-1] for r in rows) == test_names
    assert all(r["status"] == "ok" and (out / "client" / "masks" / r["image"].rsplit("/", 1)[-1]).is_file()
               for r in rows)
    assert set(json.loads((out / "eval" / "metrics.json").read_text())["model"]) >= {"mean", "aggregate"}
    manifest = json.loads((out / "export" / "1" / "manifest.json").read_text())
    # every precision (INT8: TensorRT's and ONNX Runtime's CPU recipe), float32 I/O and the serving variant
    assert [a["name"] for a in manifest["artifacts"]] == [
        f"onnx_{p}{io}" for io in ("", "_serving") for p in ("fp32", "fp16", "int8", "int8_cpu")]
    assert manifest["promoted"]["gate"] == "pass" and (out / "model_repository" / "banet_model" / "1" / "model.onnx").is_file()
    (bench_json,) = (out / "bench").glob("*_demo.json")
    bench = json.loads(bench_json.read_text())
    measured = {r["backend"] for r in bench["latency"] if r["skipped"] is None}
    assert {"torch-fp32@cpu", "ort-fp32@cpu", "ort-fp16@cpu", "ort-int8@cpu", "triton-grpc"} <= measured
    client_load = [r for r in bench["load"] if r["tool"] == "banet.client"]
    assert client_load and all(r["skipped"] is None and r["errors"] == 0 for r in client_load)


def test_real_kvasir_data_uses_the_released_model_unless_told_to_train(tmp_path, data_root):
    import argparse

    from references import demo

    kvasir = data_root / "kvasir-seg"
    released = demo.released_model(kvasir)
    assert released is not None and released.name == "banet_tiny128_kvasir.pt" and released.with_suffix(".md").is_file()
    args = argparse.Namespace(data=kvasir, epochs=None, smoke=False, train=False, grpc_port=1, http_port=2,
                              metrics_port=3)
    titles = [title for title, _ in demo._plan(args, tmp_path)]
    assert not any(t.startswith("Train") for t in titles)
    export = next(cmd for title, cmd in demo._plan(args, tmp_path) if title.startswith("Export"))
    assert export[export.index("--checkpoint") + 1] == str(released)
    trained = demo._plan(argparse.Namespace(**{**vars(args), "train": True}), tmp_path)
    assert any(t.startswith("Train") for t, _ in trained)
    assert demo.released_model(tmp_path / "some-other-data") is None

class _System:
    """A fake system for ``ensure_libb64``: whether the library is there, root, apt-get, and what ran."""

    def __init__(self, *, present=False, root=True, apt="/usr/bin/apt-get", status=0, installs=True):
        self.present, self.root, self.apt, self.status, self.installs = present, root, apt, status, installs
        self.ran: list[list[str]] = []

    def kwargs(self, **extra):
        return dict(present=lambda: self.present, is_root=lambda: self.root, apt_get=lambda: self.apt,
                    run=self.run, **extra)

    def run(self, argv):
        self.ran.append(argv)
        if self.status == 0 and argv[1] == "install" and self.installs:
            self.present = True
        return self.status


def test_libb64_is_installed_with_apt_get_as_root():
    from references.demo import ensure_libb64

    system = _System()
    assert ensure_libb64(**system.kwargs()) is None
    assert system.ran == [["/usr/bin/apt-get", "update", "-qq"], ["/usr/bin/apt-get", "install", "-y", "-qq", "libb64-0d"]]
    present = _System(present=True)
    assert ensure_libb64(**present.kwargs()) is None and present.ran == []


@pytest.mark.parametrize(("system", "allow_apt", "says"), [
    (_System(root=False), True, "cannot install it (not root); install it with: sudo apt-get install libb64-0d"),
    (_System(apt=None), True, "cannot install it (no apt-get here)"),
    (_System(), False, "--no-apt was given; install it with: apt-get install libb64-0d"),
    (_System(status=100), True, "update -qq failed with exit status 100"),
    (_System(installs=False), True, "libb64-0d installed but libb64.so.0d is still not found"),
])
def test_libb64_missing_says_how_to_install_it(system, allow_apt, says):
    from references.demo import ensure_libb64

    line = ensure_libb64(**system.kwargs(allow_apt=allow_apt))
    assert line is not None and says in line, line
    if not allow_apt or not system.root or system.apt is None:
        assert system.ran == []  # nothing attempted where the user may not


def test_demo_says_the_load_sweep_falls_back_without_libb64(tmp_path, monkeypatch, capsys):
    import json

    import references.demo as demo

    reason = "perf_analyzer needs missing shared libraries ['libb64.so.0d'] (Debian: apt-get install libb64-0d)"

    def plan(args, out):  # no steps; the bench's results as a run without libb64 leaves them
        (out / "bench").mkdir()
        (out / "bench" / "x_demo.json").write_text(json.dumps({"load": [
            {"tool": "perf_analyzer", "concurrency": 1, "skipped": reason},
            {"tool": "banet.client", "concurrency": 1, "skipped": None}]}))
        return []

    monkeypatch.setattr(demo, "_plan", plan)
    monkeypatch.setattr(demo, "ensure_libb64", lambda allow_apt: "libb64.so.0d is missing (test)")
    out = tmp_path / "demo"
    assert demo.main(["--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "[0] libb64.so.0d is missing (test)\n[0] the load sweep will measure with banet.client only" in text
    assert f"Load sweep: perf_analyzer did not run ({reason}); its figures come from banet.client only." in text


def test_no_fallback_line_when_perf_analyzer_ran(tmp_path):
    import json

    from references.demo import _load_sweep_line

    (tmp_path / "x_demo.json").write_text(json.dumps({"load": [{"tool": "perf_analyzer", "concurrency": 1, "skipped": None}]}))
    assert _load_sweep_line(tmp_path) is None
