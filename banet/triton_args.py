"""The ``tritonserver`` command-line flags, in one place: ``banet-serve``, the container image's entry command
(``deploy/Dockerfile``) and the Kubernetes manifest (``deploy/k8s/deployment.yaml``) all take theirs from
:func:`tritonserver_args` (tests/banet/test_triton_args.py checks the two files against it).

    python -m banet.triton_args --gpu --model-repository /models     # the list as JSON (Dockerfile CMD form)
"""

from __future__ import annotations

import os
from pathlib import Path

from banet.spec import GRPC_PORT, HTTP_PORT, METRICS_PORT

TRITON_RELEASE = "26.09"
"""NVIDIA's Triton container release the image (``deploy/Dockerfile``), the manifest and docs/serving.md are for:
CUDA 13.4.1, TensorRT 11; plans must be built with its TensorRT, and its DALI serializes the DALI pipeline."""
PYTHON_SHM_BYTES = 16 * 1024 * 1024
"""Initial size and growth step of each Python-backend model's shared-memory region (Triton's default: 1 MiB)."""
CONTAINER_MODEL_REPOSITORY = "/models"
"""Where the container image and the Kubernetes manifest mount the model repository."""
RESTRICTED_APIS = "model-repository,model-config,shared-memory,statistics,trace,logging"
"""Management APIs that need the admin key when restricted: only health and inference stay open."""


def gpu_visible() -> bool:
    """True when an NVIDIA GPU device node is present (``/dev/nvidia0``, as the NVIDIA container runtime mounts it)."""
    return any(Path("/dev").glob("nvidia[0-9]*"))


def tritonserver_args(*, model_repository: str | os.PathLike, gpu: bool, host: str | None = None,
                      grpc_port: int = GRPC_PORT, http_port: int = HTTP_PORT, metrics_port: int | None = METRICS_PORT,
                      backend_dir: str | os.PathLike | None = None, log_verbose: int = 0,
                      python_shm_bytes: int | None = PYTHON_SHM_BYTES, admin_key: str | None = None) -> list[str]:
    """The flags after ``tritonserver`` (the binary is not included).

    ``gpu``: the server sees a GPU. Only without one is ``--allow-gpu-metrics=false`` added (it spares the
    NVML/DCGM warnings on a CPU machine); inside the GPU container Triton's GPU metrics (utilization, memory,
    power on ``/metrics``) stay on. ``host`` None leaves Triton's default (all interfaces), as in a container;
    ``metrics_port`` None turns metrics off. ``python_shm_bytes``: the Python backend's shared memory (through which
    every tensor of the pre/post steps passes) starts at 1 MiB and grows by 1 MiB, so a 2-megapixel MASK +
    BOUNDARY costs many grow steps per request; start and grow it by this much (None: Triton's defaults).
    ``admin_key``: restrict the management APIs (:data:`RESTRICTED_APIS`) on gRPC and HTTP to that key.
    """
    args = [f"--model-repository={model_repository}"]
    if host is not None:
        args += [f"--grpc-address={host}", f"--http-address={host}"]
    args += [f"--grpc-port={grpc_port}", f"--http-port={http_port}"]
    if metrics_port is None:
        args.append("--allow-metrics=false")
    else:
        if host is not None:
            args.append(f"--metrics-address={host}")
        args.append(f"--metrics-port={metrics_port}")
        if not gpu:
            args.append("--allow-gpu-metrics=false")
    args += ["--strict-readiness=true", "--exit-on-error=true"]
    if log_verbose:
        args.append(f"--log-verbose={log_verbose}")
    if backend_dir is not None:
        args.append(f"--backend-directory={backend_dir}")
    if python_shm_bytes is not None:
        args += [f"--backend-config=python,shm-default-byte-size={python_shm_bytes}",
                 f"--backend-config=python,shm-growth-byte-size={python_shm_bytes}"]
    if admin_key is not None:
        args += [f"--grpc-restricted-protocol={RESTRICTED_APIS}:admin-key={admin_key}",
                 f"--http-restricted-api={RESTRICTED_APIS}:admin-key={admin_key}"]
    return args


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    p = argparse.ArgumentParser(prog="python -m banet.triton_args", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-repository", default=CONTAINER_MODEL_REPOSITORY)
    p.add_argument("--gpu", action="store_true", help="the server sees a GPU (GPU metrics stay on)")
    p.add_argument("--admin-key", default=None, help="restrict the management APIs to this key")
    args = p.parse_args(argv)
    flags = tritonserver_args(model_repository=args.model_repository, gpu=args.gpu, admin_key=args.admin_key)
    print(json.dumps(["tritonserver", *flags]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
