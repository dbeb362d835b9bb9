"""banet.triton_args: one source of the tritonserver flags for banet-serve, deploy/Dockerfile's CMD and the
Kubernetes manifest; the GPU container keeps Triton's GPU metrics, every launch gets the Python backend's
shared-memory settings."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from banet import spec

ROOT = Path(__file__).resolve().parents[2]
SHM_FLAGS = ["--backend-config=python,shm-default-byte-size=16777216",
             "--backend-config=python,shm-growth-byte-size=16777216"]


def _dockerfile_cmd() -> list[str]:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    (line,) = [line for line in text.splitlines() if line.startswith("CMD ")]
    return json.loads(line[len("CMD "):])


def _manifest_container() -> dict:
    yaml = pytest.importorskip("yaml", reason="pyyaml not installed")
    for doc in yaml.safe_load_all((ROOT / "deploy" / "k8s" / "deployment.yaml").read_text()):
        if doc["kind"] == "Deployment":
            (container,) = doc["spec"]["template"]["spec"]["containers"]
            return container
    raise AssertionError("no Deployment in deploy/k8s/deployment.yaml")


def test_the_k8s_manifest_starts_tritonserver_with_the_functions_flags():
    container = _manifest_container()
    args = container["args"]
    for flag in SHM_FLAGS:  # what banet-serve adds (post-processing 75 -> 25 ms with it, docs/serving.md)
        assert flag in args
    assert "--allow-gpu-metrics=false" not in args  # one GPU per replica: keep Triton's GPU metrics
    from banet.triton_args import tritonserver_args

    mount = next(m for m in container["volumeMounts"] if m["name"] == "models")["mountPath"]
    assert container["command"] == ["tritonserver"]
    assert args == tritonserver_args(model_repository=mount, gpu=True, admin_key="$(TRITON_ADMIN_KEY)")
    assert any(e["name"] == "TRITON_ADMIN_KEY" for e in container["env"])


def test_the_dockerfile_cmd_is_the_functions_flags():
    cmd = _dockerfile_cmd()
    from banet.triton_args import CONTAINER_MODEL_REPOSITORY, tritonserver_args

    assert cmd == ["tritonserver", *tritonserver_args(model_repository=CONTAINER_MODEL_REPOSITORY, gpu=True)]
    assert set(SHM_FLAGS) <= set(cmd) and "--allow-gpu-metrics=false" not in cmd
    exposed = re.search(r"^EXPOSE (.+)$", (ROOT / "deploy" / "Dockerfile").read_text(), re.MULTILINE).group(1)
    assert sorted(int(p) for p in exposed.split()) == sorted((spec.HTTP_PORT, spec.GRPC_PORT, spec.METRICS_PORT))


def test_the_module_prints_the_dockerfile_cmd(capsys):
    from banet.triton_args import main

    assert main(["--gpu"]) == 0
    assert json.loads(capsys.readouterr().out) == _dockerfile_cmd()


def test_gpu_metrics_are_turned_off_only_without_a_gpu():
    from banet.triton_args import tritonserver_args

    cpu = tritonserver_args(model_repository="/m", gpu=False, host="127.0.0.1")
    gpu = tritonserver_args(model_repository="/m", gpu=True, host="127.0.0.1")
    assert "--allow-gpu-metrics=false" in cpu and "--allow-gpu-metrics=false" not in gpu
    assert set(cpu) - set(gpu) == {"--allow-gpu-metrics=false"}
    off = tritonserver_args(model_repository="/m", gpu=False, metrics_port=None)
    assert "--allow-metrics=false" in off and not any(a.startswith("--metrics-") for a in off)
    assert not any("address" in a for a in tritonserver_args(model_repository="/m", gpu=True))  # all interfaces


@pytest.mark.parametrize("gpu", [True, False])
def test_banet_serve_launches_with_the_same_flags(tmp_path, gpu):
    """banet-serve's TritonServer: the function's flags (GPU seen -> GPU metrics on), backend folder, extras last."""
    from banet.server import TritonInstallation, TritonServer
    from banet.triton_args import tritonserver_args

    server = TritonServer(tmp_path, host="127.0.0.1", grpc_port=1, http_port=2, metrics_port=3, gpu=gpu,
                          extra_args=("--log-info=false",))
    cmd = server.command(TritonInstallation(binary=Path("/x/tritonserver"), backend_dir=Path("/b")))
    assert cmd[0] == "/x/tritonserver" and cmd[-1] == "--log-info=false"
    assert cmd[1:-1] == tritonserver_args(model_repository=tmp_path.resolve(), gpu=gpu, host="127.0.0.1", grpc_port=1,
                                          http_port=2, metrics_port=3, backend_dir=Path("/b"))
    assert ("--allow-gpu-metrics=false" in cmd) is not gpu
    assert set(SHM_FLAGS) <= set(cmd)


def test_banet_serve_leaves_the_shared_memory_to_a_caller_that_sets_it(tmp_path):
    from banet.server import TritonInstallation, TritonServer

    own = "--backend-config=python,shm-default-byte-size=1048576"
    cmd = TritonServer(tmp_path, gpu=False, extra_args=(own,)).command(TritonInstallation(binary=Path("t")))
    assert [a for a in cmd if "shm-" in a] == [own]


def test_banet_serve_asks_whether_a_gpu_is_visible_when_not_told(tmp_path, monkeypatch):
    from banet import server

    monkeypatch.setattr(server, "gpu_visible", lambda: True)
    cmd = server.TritonServer(tmp_path).command(server.TritonInstallation(binary=Path("t")))
    assert "--allow-gpu-metrics=false" not in cmd
    monkeypatch.setattr(server, "gpu_visible", lambda: False)
    assert "--allow-gpu-metrics=false" in server.TritonServer(tmp_path).command(server.TritonInstallation(binary=Path("t")))
