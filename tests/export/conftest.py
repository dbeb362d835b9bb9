"""Fixtures of the export tests: a tiny checkpoint with non-trivial masks on real images, and one
shared export (FP32 + FP16 + INT8 at 64 px) that several tests read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

EXPORT_SIZE = 64


@pytest.fixture(scope="session")
def real_tiny_checkpoint(tiny_checkpoint, kvasir_test_pairs, tmp_path_factory) -> Path:
    """``tiny_checkpoint`` with its head bias re-centred on real Kvasir-SEG images.

    The conftest checkpoint is centred on Gaussian noise; on real photographs its masks can come out
    empty, and two empty masks agree perfectly, which would make every parity check pass trivially.
    Here about half of each real image is foreground, so mask boundaries exist and move when the
    numbers do.
    """
    import torch

    from banet import processing
    from banet.checkpoint import model_from_checkpoint, save_checkpoint

    model, _ = model_from_checkpoint(tiny_checkpoint)
    batch = np.stack([processing.preprocess(processing.load_image(img), EXPORT_SIZE)
                      for img, _ in kvasir_test_pairs[:8]])
    with torch.no_grad():
        model.head.bias -= model(torch.from_numpy(batch)).median()
    path = tmp_path_factory.mktemp("ckpt-real") / "tiny_real.pt"
    save_checkpoint(path, model, note="tiny random weights, bias centred on real images")
    return path


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
