"""Fixtures of the bench tests: a tiny checkpoint whose masks on real images are not trivial, and
one export (FP32 + INT8 ONNX at 64 px, through ``export.pipeline.run_export``) shared by the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

BENCH_SIZE = 64


@pytest.fixture(scope="session")
def bench_checkpoint(tiny_checkpoint, kvasir_test_pairs, tmp_path_factory) -> Path:
    """``tiny_checkpoint`` with the head bias centred on real Kvasir-SEG images: about half of each
    image is foreground, so masks have boundaries and parity numbers can move (two empty masks
    would agree perfectly and make every parity check pass)."""
    import torch

    from banet import processing
    from banet.checkpoint import model_from_checkpoint, save_checkpoint

    model, _ = model_from_checkpoint(tiny_checkpoint)
    batch = np.stack([processing.preprocess(processing.load_image(img), BENCH_SIZE)
                      for img, _ in kvasir_test_pairs[:8]])
    with torch.no_grad():
        model.head.bias -= model(torch.from_numpy(batch)).median()
    path = tmp_path_factory.mktemp("bench-ckpt") / "tiny_real.pt"
    save_checkpoint(path, model, note="tiny random weights, bias centred on real images")
    return path


@pytest.fixture(scope="session")
def bench_artifacts(bench_checkpoint, data_root, tmp_path_factory) -> Path:
    """A real banet-export version folder: FP32 and INT8 ONNX at 64 px with manifest.json."""
    from export.pipeline import ExportConfig, run_export

    kvasir = data_root / "kvasir-seg"
    out = tmp_path_factory.mktemp("bench-artifacts")
    manifest = run_export(ExportConfig(
        checkpoint=str(bench_checkpoint), out=str(out), image_size=BENCH_SIZE, int8=True,
        calib_data=f"{kvasir}:train", calib_count=8, parity_data=f"{kvasir}:test", parity_count=4))
    return Path(manifest["directory"])
