"""Fixtures of the export tests: a tiny checkpoint with non-trivial masks on real images, one shared
export (FP32 + FP16 + INT8 at 64 px, with the TensorRT engines of whichever builder is installed)
that several tests read, and that builder."""

from __future__ import annotations

from pathlib import Path

import pytest

EXPORT_SIZE = 64


@pytest.fixture(scope="session")
def real_tiny_checkpoint(centred_checkpoint, data_root) -> Path:
    """The tiny checkpoint centred on real Kvasir-SEG images at EXPORT_SIZE px (see ``centred_checkpoint``)."""
    return centred_checkpoint(EXPORT_SIZE)


@pytest.fixture(scope="session")
def kvasir(data_root) -> Path:
    return data_root / "kvasir-seg"


@pytest.fixture(scope="session")
def exported(real_tiny_checkpoint, kvasir, tmp_path_factory) -> dict:
    """One export through the library entry point: FP32, FP16 and INT8 with their gates."""
    from export.pipeline import ExportConfig, run_export

    out = tmp_path_factory.mktemp("export")
    config = ExportConfig(checkpoint=str(real_tiny_checkpoint), out=str(out), image_size=EXPORT_SIZE,
                          fp16=True, int8=True, calib_data=f"{kvasir}:train", calib_count=8,
                          parity_data=f"{kvasir}:test", parity_count=12)
    return run_export(config)


@pytest.fixture(scope="session")
def trt_builder():
    """The TensorRT builder the export uses (TensorRT-RTX on these machines: it builds without a GPU).

    Absent, a test that needs it skips with the install command; under CI that skip is a failure
    (tests/conftest.py): CI installs ``.[all]``, which holds the ``tensorrt-rtx`` extra.
    """
    from export import tensorrt as trt_route

    builder = trt_route.load_builder()
    if builder is None or not builder.can_build():
        pytest.skip(trt_route.unavailable_reason() if builder is None else builder.cannot_build_reason())
    return builder
