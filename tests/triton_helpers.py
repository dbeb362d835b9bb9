"""Helpers shared by the serving tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import logging
from pathlib import Path

from banet import spec

KVASIR_LARGE = "cjyzul1qggwwj07216mhiv5sy"  # 1920x1072, the largest Kvasir-SEG size
SERVING_SIZE = 128
"""The tiny model is served at 128 px, not spec.IMAGE_SIZE: the tests then also prove that the
repository's image size reaches the pre-processing (a mismatch would fail the parity tests)."""


def export_tiny_onnx(checkpoint: Path, out: Path) -> Path:
    """The tiny checkpoint as ONNX with the spec's names (export/onnx.py is the one exporter)."""
    from banet.checkpoint import model_from_checkpoint
    from export.onnx import export_onnx

    model, _ = model_from_checkpoint(checkpoint)
    return export_onnx(model.eval(), out, image_size=SERVING_SIZE)


def start_server(repository: Path, **kwargs):
    """A started TritonServer on free loopback ports (one ONNX Runtime thread: 2 shared cores)."""
    from banet.server import TritonServer, free_port

    logging.getLogger("banet.server.tritonserver").setLevel(logging.WARNING)
    server = TritonServer(repository, grpc_port=kwargs.pop("grpc_port", None) or free_port(),
                          http_port=kwargs.pop("http_port", None) or free_port(), metrics_port=None,
                          env={"BANET_ORT_THREADS": "1"}, **kwargs)
    return server.start()
