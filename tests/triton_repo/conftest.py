"""Fixtures for the serving tests: ONE real tritonserver per test session on a repository exported
from the tiny checkpoint, plus the in-process PyTorch reference of the same checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from banet import processing, spec
from triton_helpers import SERVING_SIZE, export_tiny_onnx, start_server

@pytest.fixture(scope="session")
def serving_checkpoint(tiny_checkpoint, optional_data_root, tmp_path_factory) -> Path:
    """The tiny checkpoint with its head bias re-centred for real images at SERVING_SIZE.

    Random weights calibrated on noise give near-empty or near-full masks on real photographs at
    128 px; centring the logits on real images keeps real boundaries in the masks, which is what
    makes the Triton-vs-PyTorch comparison sensitive.
    """
    import torch

    from banet.checkpoint import model_from_checkpoint, save_checkpoint

    model, _ = model_from_checkpoint(tiny_checkpoint)
    paths = sorted((optional_data_root / "kvasir-seg" / "images").glob("*.jpg"))[:4] if optional_data_root else []
    if paths:
        batch = np.stack([processing.preprocess(processing.load_image(p), SERVING_SIZE) for p in paths])
    else:
        batch = np.random.default_rng(0).normal(size=(4, 3, SERVING_SIZE, SERVING_SIZE)).astype(np.float32)
    with torch.no_grad():
        model.head.bias -= model(torch.from_numpy(batch)).median()
    path = tmp_path_factory.mktemp("serving_ckpt") / "tiny_serving.pt"
    save_checkpoint(path, model, note="tiny random-weight checkpoint centred for real images at 128 px")
    return path


@pytest.fixture(scope="session")
def tiny_onnx(serving_checkpoint, tmp_path_factory) -> Path:
    return export_tiny_onnx(serving_checkpoint, tmp_path_factory.mktemp("onnx") / "tiny.onnx")


@pytest.fixture(scope="session")
def model_repository(tiny_onnx, tmp_path_factory) -> Path:
    from export.repository import write_repository

    repo = tmp_path_factory.mktemp("repo") / "model_repository"
    write_repository(repo, onnx_path=tiny_onnx, image_size=SERVING_SIZE)
    return repo


@pytest.fixture(scope="session")
def triton_server(model_repository):
    server = start_server(model_repository)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def segmenter(triton_server):
    from banet.client import TritonSegmenter

    seg = TritonSegmenter(triton_server.grpc_url, timeout_s=120, retries=2, backoff_s=0.2)
    yield seg
    seg.close()


@pytest.fixture(scope="session")
def torch_reference(serving_checkpoint):
    """``(H, W, 3)`` uint8 image -> uint8 mask from in-process PyTorch (banet.inference)."""
    from banet.checkpoint import model_from_checkpoint
    from banet.inference import predict_masks, torch_runner

    model, _ = model_from_checkpoint(serving_checkpoint)
    run = torch_runner(model)

    def predict(image: np.ndarray, threshold: float = spec.MASK_THRESHOLD) -> np.ndarray:
        return predict_masks(run, [image], threshold=threshold, size=SERVING_SIZE)[0]

    return predict
