"""Assemble the backends of one bench run: PyTorch variants, the export artifacts, Triton.

Every backend the issue names is listed, whether or not it can run here; those that cannot are
kept with the reason (no artifact in the manifest, no CUDA, no tensorrt, ...).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from export.pipeline import ARTIFACT_BY_RUNTIME, runtime_artifact

from bench.backends import (
    Backend,
    TorchBackend,
    Unavailable,
    ort_backend,
    tensorrt_backend,
    torch_tensorrt_backend,
    torch_variants,
)

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
PRECISIONS = ("fp32", "fp16", "int8")


class ArtifactsError(ValueError):
    """The artifacts folder or its manifest is missing or unreadable (the message names the file)."""


def find_manifest(artifacts: str | Path) -> Path:
    """``DIR/manifest.json``, or the newest numbered version ``DIR/<n>/manifest.json``."""
    root = Path(artifacts)
    if (root / MANIFEST).is_file():
        return root / MANIFEST
    versions = sorted((p for p in root.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)) \
        if root.is_dir() else []
    for version in reversed(versions):
        if (version / MANIFEST).is_file():
            return version / MANIFEST
    raise ArtifactsError(f"no {MANIFEST} in {root} or its numbered version folders (run banet-export first)")


def load_manifest(artifacts: str | Path) -> tuple[dict, Path]:
    path = find_manifest(artifacts)
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ArtifactsError(f"{path}: not a readable manifest ({err})") from None
    if not isinstance(manifest.get("artifacts"), list):
        raise ArtifactsError(f"{path}: no 'artifacts' list")
    return manifest, path.parent


def artifact_backends(manifest: dict | None, folder: Path | None, *, device: str,
                      threads: int | None = None) -> list[Backend]:
    """ONNX Runtime (CPU, and CUDA where chosen) for each ONNX artifact; TensorRT for each engine."""
    # the float32-I/O graphs: these backends take (B, 3, S, S) tensors (the uint8 *_serving graphs run in
    # the Triton backend, which serves the hot path, and in references.serving.hotpath)
    float_io = [a for a in (manifest or {}).get("artifacts", [])
                if a.get("format") == "onnx" and a.get("io", "float32") == "float32"]
    engines = {e["name"]: e for e in (manifest or {}).get("engines", [])}
    devices = ["cpu", "cuda"]  # ORT CUDA is listed (and skipped with the reason) where absent
    out: list[Backend] = []
    for precision in PRECISIONS:
        for dev in devices:
            art = runtime_artifact(float_io, precision, f"onnxruntime-{dev}")  # the one mapping (export.pipeline)
            if art is None:
                name = ARTIFACT_BY_RUNTIME[f"onnxruntime-{dev}"][precision]
                why = ("no --artifacts given" if manifest is None else
                       f"no {name} in the manifest (the {precision} artifact ONNX Runtime on {dev} runs)")
                out.append(Unavailable(f"ort-{precision}@{dev}", why, precision, dev))
            else:
                out.append(ort_backend(folder / art["path"], precision, dev, threads=threads))
    for precision in ("fp16", "int8"):
        engine = engines.get(f"tensorrt_{precision}")
        path = folder / engine["path"] if engine and folder else None
        backend = tensorrt_backend(path, precision, engine)
        ok, reason = backend.available()
        if not ok and engine and str(engine.get("status", "")).startswith("not built"):
            reason = f"{reason}; manifest: {engine['status']}"
        out.append(backend if ok else Unavailable(backend.name, reason, precision, "cuda"))
    return out


def build_backends(model, *, manifest: dict | None, folder: Path | None, device: str, image_size: int,
                   threads: int | None = None) -> tuple[TorchBackend, list[Backend]]:
    """The FP32 PyTorch reference and every other backend (reference first in the list)."""
    variants = torch_variants(device)
    backends: list[Backend] = [TorchBackend(model, v) for v in variants]
    reference = backends[0]
    backends += artifact_backends(manifest, folder, device=device, threads=threads)
    for precision in ("fp16", "fp32"):
        backends.append(torch_tensorrt_backend(model, precision, image_size))
    return reference, backends


def select(backends: list[Backend], patterns: list[str] | None) -> list[Backend]:
    """Keep backends whose name contains any of ``patterns`` (all when None)."""
    if not patterns:
        return backends
    return [b for b in backends if any(p in b.name for p in patterns)]
