"""Fixtures of the bench tests: a tiny checkpoint whose masks on real images are not trivial, and
one export (FP32 + INT8 ONNX at 64 px, through ``export.pipeline.run_export``) shared by the tests."""

from __future__ import annotations

from pathlib import Path

import pytest

BENCH_SIZE = 64


@pytest.fixture(scope="session")
def bench_checkpoint(centred_checkpoint, data_root) -> Path:
    """The tiny checkpoint centred on real Kvasir-SEG images at BENCH_SIZE px (see ``centred_checkpoint``)."""
    return centred_checkpoint(BENCH_SIZE)


@pytest.fixture(scope="session")
def bench_artifacts(bench_checkpoint, data_root, tmp_path_factory) -> Path:
    """A real banet-export version folder: FP32 and INT8 ONNX at 64 px with manifest.json."""
    from export.pipeline import ExportConfig, run_export

    kvasir = data_root / "kvasir-seg"
    out = tmp_path_factory.mktemp("bench-artifacts")
    manifest = run_export(ExportConfig(
        checkpoint=str(bench_checkpoint), out=str(out), image_size=BENCH_SIZE, int8=True,
        calib_data=f"{kvasir}:train", calib_count=8, parity_data=f"{kvasir}:test", parity_count=4,
        engine=False))  # the bench tests use the ONNX artifacts; engines are tested in tests/export
    return Path(manifest["directory"])
