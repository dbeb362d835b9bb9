"""deploy/k8s manifests parse and name the ports and health paths that banet-serve and the client use."""

from __future__ import annotations

from pathlib import Path

import pytest

from banet import spec
from banet.server import LIVE_PATH, READY_PATH

yaml = pytest.importorskip("yaml", reason="pyyaml not installed")
K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"


def _docs() -> dict[str, dict]:
    docs = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            docs[doc["kind"]] = doc
    return docs


def test_manifests_parse_and_agree_with_the_spec():
    docs = _docs()
    deployment, service = docs["Deployment"], docs["Service"]
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": spec.HTTP_PORT, "grpc": spec.GRPC_PORT, "metrics": spec.METRICS_PORT}
    args = container["args"]
    for flag, port in (("--grpc-port", spec.GRPC_PORT), ("--http-port", spec.HTTP_PORT), ("--metrics-port", spec.METRICS_PORT)):
        assert f"{flag}={port}" in args
    assert any(a.startswith("--model-repository=") for a in args)
    mount = next(m for m in container["volumeMounts"] if m["name"] == "models")["mountPath"]
    assert f"--model-repository={mount}" in args
    assert container["readinessProbe"]["httpGet"] == {"path": READY_PATH, "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": LIVE_PATH, "port": "http"}
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert any(a.startswith("--grpc-restricted-protocol=") for a in args)
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        "http": (spec.HTTP_PORT, "http"), "grpc": (spec.GRPC_PORT, "grpc"), "metrics": (spec.METRICS_PORT, "metrics")}
    assert service["spec"]["type"] == "ClusterIP"
