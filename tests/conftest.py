"""Shared fixtures and markers. Nothing here touches CUDA at import time.

Markers become skips with a reason: ``needs_cuda``, ``needs_tensorrt``, ``needs_data`` (the real
datasets in ``../shared/data`` or ``$BANET_DATA``), ``needs_triton``, and ``slow`` (run with
``--run-slow``).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("BANET_DATA", REPO_ROOT.parent / "shared" / "data"))


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="run tests marked slow")


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _triton_binary() -> str | None:
    try:
        from banet.server import find_tritonserver
    except ImportError:
        return None
    try:
        return str(find_tritonserver())
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return None


def pytest_collection_modifyitems(config, items):
    reasons = {}
    if not config.getoption("--run-slow"):
        reasons["slow"] = "slow test: run with --run-slow"
    if not _cuda_available():
        reasons["needs_cuda"] = "no CUDA GPU on this machine"
    if importlib.util.find_spec("tensorrt") is None or not _cuda_available():
        reasons["needs_tensorrt"] = "tensorrt is not installed (its PyPI wheels cannot be fetched here) or no GPU"
    if not (DATA_ROOT / "kvasir-seg").is_dir():
        reasons["needs_data"] = f"real datasets not found at {DATA_ROOT} (set BANET_DATA)"
    if any("needs_triton" in item.keywords for item in items) and _triton_binary() is None:
        reasons["needs_triton"] = "no tritonserver binary: pip install '.[serve]' (nvidia-pytriton)"
    for item in items:
        for marker, reason in reasons.items():
            if marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def optional_data_root() -> Path | None:
    """The real datasets' folder, or None when absent (for fixtures that can do without)."""
    return DATA_ROOT if (DATA_ROOT / "kvasir-seg").is_dir() else None


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA_ROOT / "kvasir-seg").is_dir():
        pytest.skip(f"real datasets not found at {DATA_ROOT}")
    return DATA_ROOT


@pytest.fixture(scope="session")
def kvasir_test_pairs(data_root) -> list[tuple[Path, Path]]:
    """(image, mask) paths of the first Kvasir-SEG test-split images, sorted by name."""
    import csv

    root = data_root / "kvasir-seg"
    with open(root / "splits_effisegnet.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    names = sorted(r["name"] for r in rows if r["effisegnet_split"] == "test")
    pairs = []
    for name in names:
        stem = Path(name).stem
        pairs.append((root / "images" / f"{stem}.jpg", root / "masks" / f"{stem}.jpg"))
    return pairs


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny BA-Net checkpoint whose masks are not trivial.

    Random weights, with the head's bias shifted so that about half the pixels of typical inputs
    are foreground: masks then have real boundaries, which makes mask-parity checks sensitive.
    """
    import torch

    from banet.checkpoint import save_checkpoint
    from banet.model import PRESETS, build_model

    torch.manual_seed(0)
    model = build_model(PRESETS["tiny"]).eval()
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(4, 3, 64, 64)).astype(np.float32))
    with torch.no_grad():
        model.head.bias -= model(x).median()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model, note="tiny random-weight checkpoint for tests")
    return path


@pytest.fixture(scope="session")
def centred_checkpoint(tiny_checkpoint, optional_data_root, tmp_path_factory):
    """Factory ``size -> Path``: ``tiny_checkpoint`` with its head bias centred on real images.

    ``tiny_checkpoint`` is centred on Gaussian noise; on real photographs its masks can come out
    empty or full, and two empty masks agree perfectly, which would make every parity check pass
    trivially. Centred on the first 8 Kvasir-SEG test images at ``size`` px (noise when the data
    are absent), about half of each real image is foreground, so mask boundaries exist and move
    when the numbers do. The head is scaled so that the logits spread like a trained model's (their
    std is 4 on those images). One file per size, made once per session.
    """
    import torch

    from banet import processing
    from banet.checkpoint import model_from_checkpoint, save_checkpoint
    from banet.data.pairs import find_pairs

    made: dict[int, Path] = {}

    def make(size: int) -> Path:
        if size in made:
            return made[size]
        model, _ = model_from_checkpoint(tiny_checkpoint)
        if optional_data_root is not None:
            pairs = find_pairs(optional_data_root / "kvasir-seg", "test")[:8]
            batch = np.stack([processing.preprocess(processing.load_image(p.image), size) for p in pairs])
        else:
            batch = np.random.default_rng(0).normal(size=(4, 3, size, size)).astype(np.float32)
        with torch.no_grad():
            model.head.bias -= model(torch.from_numpy(batch)).median()
            # random weights give logits of about +-0.005, probabilities of 0.5 +- 0.001: scale the
            # (linear) head so they spread like a trained model's (std 4); the masks at 0.5 stay the
            # same, but a float16 or uint8 probability (the served output) can then resolve them
            scale = 4.0 / float(model(torch.from_numpy(batch)).std())
            model.head.weight *= scale
            model.head.bias *= scale
        path = tmp_path_factory.mktemp(f"centred-{size}") / "tiny_centred.pt"
        save_checkpoint(path, model, note=f"tiny random weights, head bias centred on real images at {size} px")
        made[size] = path
        return path

    return make
