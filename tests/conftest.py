"""Shared fixtures, markers, and the rule that CI cannot go green by skipping.

Nothing here touches CUDA at import time.

Two kinds of markers turn into skips with a reason:

- What CI's machine cannot have (it has no GPU), so a skip there is honest, CI included:
  ``needs_cuda``, ``needs_tensorrt`` (data-center TensorRT or Torch-TensorRT, and a GPU), and
  ``slow`` (run with ``--run-slow``). These are ``CI_MAY_SKIP``.
- What CI must have: ``needs_data`` (the real datasets in ``../shared/data`` or ``$BANET_DATA``),
  ``needs_triton`` (a tritonserver binary), ``needs_perf_analyzer`` (Triton's load generator, set up
  by ``python -m bench.perf_analyzer --setup``), ``needs_trt_builder`` (the TensorRT-RTX builder,
  which installs from PyPI and builds on a CPU). On a user's machine a missing one is a skip with
  its reason; under CI it is a failure with the same reason. A new requirement is one entry in
  ``REQUIREMENTS`` (and its line in pyproject.toml's markers).

Under CI (the ``CI`` environment variable set, e.g. ``CI=true``) every skip of a test without a
``CI_MAY_SKIP`` marker is reported as a failure with its reason, wherever it came from: a
requirement marker, ``pytest.skip`` in a fixture such as ``data_root`` or in a test,
``pytest.importorskip``, a skipped module. xfail stays xfail.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("BANET_DATA", REPO_ROOT.parent / "shared" / "data"))
DATASETS = ("kvasir-seg", "isic2017")

CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
CI_MAY_SKIP = frozenset({"needs_cuda", "needs_tensorrt", "slow"})


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="run tests marked slow")


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def missing_data() -> str | None:
    """Why the real datasets cannot be used, or None when every folder in DATASETS is there."""
    absent = [name for name in DATASETS if not (DATA_ROOT / name).is_dir()]
    if absent:
        return f"real datasets not found: {', '.join(str(DATA_ROOT / n) for n in absent)} (set BANET_DATA)"
    return None


def _missing_triton() -> str | None:
    try:
        from banet.server import find_tritonserver

        find_tritonserver()
    except Exception as err:  # noqa: BLE001 - any failure means "not available", with its reason
        return f"no tritonserver binary: {err}"
    return None


def _missing_perf_analyzer() -> str | None:
    try:
        from bench.perf_analyzer import setup

        setup(download=False)
    except Exception as err:  # noqa: BLE001 - PerfAnalyzerUnavailable names what is missing
        return f"perf_analyzer is not usable: {err}"
    return None


def _missing_trt_builder() -> str | None:
    # the TensorRT-RTX wheels (tensorrt-rtx-cu13-libs + -bindings) import as tensorrt_rtx_bindings
    for module in ("tensorrt_rtx_bindings", "tensorrt_rtx"):
        if importlib.util.find_spec(module) is not None:
            try:
                importlib.import_module(module)
            except Exception as err:  # noqa: BLE001 - installed but broken is missing too
                return f"the TensorRT-RTX builder does not load ({module}: {err})"
            return None
    return "the TensorRT-RTX builder is not installed (pip install tensorrt-rtx-cu13-libs tensorrt-rtx-cu13-bindings)"


# marker -> a check that returns why the requirement is missing (None: present). Checked only when
# a collected test carries the marker.
REQUIREMENTS: dict[str, Callable[[], str | None]] = {
    "needs_data": missing_data,
    "needs_triton": _missing_triton,
    "needs_perf_analyzer": _missing_perf_analyzer,
    "needs_trt_builder": _missing_trt_builder,
}


def pytest_collection_modifyitems(config, items):
    reasons = {}
    if not config.getoption("--run-slow"):
        reasons["slow"] = "slow test: run with --run-slow"
    if not _cuda_available():
        reasons["needs_cuda"] = "no CUDA GPU on this machine"
    if importlib.util.find_spec("tensorrt") is None or not _cuda_available():
        reasons["needs_tensorrt"] = "tensorrt is not installed (its PyPI wheels cannot be fetched here) or no GPU"
    used = {marker for item in items for marker in REQUIREMENTS if marker in item.keywords}
    for marker in sorted(used):
        reason = REQUIREMENTS[marker]()
        if reason is not None:
            reasons[marker] = reason
    for item in items:
        for marker, reason in reasons.items():
            if marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _ci_failure(reason: str) -> str:
    return (f"skipped under CI (CI={os.environ.get('CI')}), which must run this test: {reason}\n"
            f"(only tests marked {', '.join(sorted(CI_MAY_SKIP))} may skip there; see tests/conftest.py)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if CI and report.skipped and not hasattr(report, "wasxfail") \
            and not any(marker in item.keywords for marker in CI_MAY_SKIP):
        report.longrepr = _ci_failure(_skip_reason(report))
        report.outcome = "failed"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if CI and report.skipped:  # a module skipped as a whole (e.g. pytest.importorskip at its top)
        report.longrepr = _ci_failure(_skip_reason(report))
        report.outcome = "failed"


@pytest.fixture(scope="session")
def optional_data_root() -> Path | None:
    """The real datasets' folder, or None when absent (for fixtures that can do without)."""
    return DATA_ROOT if missing_data() is None else None


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real datasets' folder; a skip with the reason when absent (a failure under CI)."""
    reason = missing_data()
    if reason is not None:
        pytest.skip(reason)
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
    when the numbers do. One file per size, made once per session.
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
        path = tmp_path_factory.mktemp(f"centred-{size}") / "tiny_centred.pt"
        save_checkpoint(path, model, note=f"tiny random weights, head bias centred on real images at {size} px")
        made[size] = path
        return path

    return make
