"""Fixtures for the serving tests: ONE real tritonserver per test session on a repository exported
from the tiny checkpoint, plus the in-process PyTorch reference of the same checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from banet import spec
from triton_helpers import SERVING_SIZE, export_tiny_onnx, start_server

@pytest.fixture(scope="session")
def serving_checkpoint(centred_checkpoint) -> Path:
    """The tiny checkpoint centred on real images at SERVING_SIZE: masks with real boundaries make the
    Triton-vs-PyTorch comparison sensitive (see ``centred_checkpoint``)."""
    return centred_checkpoint(SERVING_SIZE)


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
def torch_runner_of_served(serving_checkpoint):
    from banet.checkpoint import model_from_checkpoint
    from banet.inference import torch_runner

    return torch_runner(model_from_checkpoint(serving_checkpoint)[0])


@pytest.fixture(scope="session")
def torch_reference(torch_runner_of_served):
    """``(H, W, 3)`` uint8 image -> uint8 mask from in-process PyTorch (banet.inference)."""
    from banet.inference import predict_masks

    def predict(image: np.ndarray, threshold: float = spec.MASK_THRESHOLD) -> np.ndarray:
        return predict_masks(torch_runner_of_served, [image], threshold=threshold, size=SERVING_SIZE)[0]

    return predict


@pytest.fixture(scope="session")
def torch_probability(torch_runner_of_served):
    """``(H, W, 3)`` uint8 image -> ``(H, W)`` float32 foreground probability from in-process PyTorch,
    for choosing thresholds at which a reference mask has real boundaries."""
    from banet import processing
    from banet.inference import predict_logits

    def probability(image: np.ndarray) -> np.ndarray:
        (logits,) = predict_logits(torch_runner_of_served, [image], size=SERVING_SIZE)
        return processing.probability_map(logits, image.shape[:2])

    return probability
