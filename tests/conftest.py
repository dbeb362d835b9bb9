"""Shared fixtures, markers, and the rule that CI cannot go green by skipping.

Nothing here touches CUDA at import time (the capability probes run once, at collection).

Markers that turn into skips with a reason:

- What a host may or may not have, in pairs: ``needs_cuda`` / ``needs_no_cuda``, ``needs_tensorrt`` /
  ``needs_no_tensorrt`` (the data-center TensorRT and a GPU), ``needs_torch_tensorrt`` /
  ``needs_no_torch_tensorrt`` (Torch-TensorRT and a GPU). A ``needs_no_*`` test covers the path taken
  where the capability is absent (a CUDA-only backend that says why it cannot run, a CLI that
  prints trtexec commands instead of building); where the capability is present it skips, and its
  ``needs_*`` counterpart runs instead. Every host runs exactly one side of each pair, so a skip
  for either side is honest, CI included. ``slow`` (run with ``--run-slow``) belongs here too.
  These are ``CI_MAY_SKIP``; the capability probes are ``CAPABILITIES``.
- What CI must have: ``needs_data`` (the real datasets in ``../shared/data`` or ``$BANET_DATA``),
  ``needs_triton`` (a tritonserver binary), ``needs_perf_analyzer`` (Triton's load generator, set up
  by ``python -m bench.perf_analyzer --setup``), ``needs_trt_builder`` (the TensorRT-RTX builder,
  which installs from PyPI and builds on a CPU), ``needs_dali``, ``needs_dicom`` (the ``dicom`` extra),
  ``needs_video`` (PyAV, the ``video`` extra). On a user's machine a missing one is a skip with its
  reason; under CI it is a failure with the same reason. A new requirement is one entry in
  ``REQUIREMENTS`` (and its line in pyproject.toml's markers).

Under CI (the ``CI`` environment variable set, e.g. ``CI=true``) a skip is allowed only when it is
the skip this file applied for a ``CI_MAY_SKIP`` marker, with that marker's reason. Every other
skip is reported as a failure with its reason, wherever it came from: a requirement marker,
``pytest.skip`` in a fixture such as ``data_root`` or in a test (also inside a ``needs_cuda`` test
that runs on a GPU host), ``pytest.importorskip``, a skipped module. So a test written for "no GPU
here" must say so with ``needs_no_cuda`` rather than call ``pytest.skip`` when it finds one: on a GPU
CI host the bare skip is a failure. xfail stays xfail.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from banet.data import data_root

pytest_plugins = ("pytester", "serving_fixtures")  # serving_fixtures: the one real tritonserver of the session  # tests/test_conftest_rule.py runs this file's rule on small test files

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = data_root()  # banet.data.data_root: the one definition of the data root
DATASETS = ("kvasir-seg", "isic2017")

CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="run tests marked slow")


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _installed(module: str) -> Callable[[], bool]:
    return lambda: importlib.util.find_spec(module) is not None


# capability -> a probe (True: present), asked at collection only for the capabilities that the
# collected tests' markers name. tests/test_conftest_rule.py simulates a GPU host by faking what
# these probes look at (torch.cuda, a tensorrt package), not the probes themselves.
CAPABILITIES: dict[str, Callable[[], bool]] = {
    "cuda": _cuda_available,
    "tensorrt": _installed("tensorrt"),  # the data-center TensorRT (Triton plans), not TensorRT-RTX
    "torch_tensorrt": _installed("torch_tensorrt"),
}

# marker -> (the capabilities it needs, why it skips where one is missing). Each has a needs_no_*
# twin (ABSENT) that skips exactly where it runs.
PAIRED: dict[str, tuple[tuple[str, ...], str]] = {
    "needs_cuda": (("cuda",), "no CUDA GPU on this machine"),
    "needs_tensorrt": (("tensorrt", "cuda"), "the data-center tensorrt is not installed (its PyPI wheels cannot "
                                             "be fetched here) or no CUDA GPU"),
    "needs_torch_tensorrt": (("torch_tensorrt", "cuda"), "torch_tensorrt is not installed (not installable "
                                                         "here) or no CUDA GPU"),
}
ABSENT: dict[str, str] = {f"needs_no_{m.removeprefix('needs_')}": m for m in PAIRED}
"""``needs_no_cuda`` -> ``needs_cuda``, ...: a test of the path taken without the capability."""
CI_MAY_SKIP = frozenset({*PAIRED, *ABSENT, "slow"})
_ALLOWED_SKIP = pytest.StashKey[str]()  # the one skip reason CI accepts for an item


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


def _missing_dali() -> str | None:
    from export import dali

    return None if dali.available() else "nvidia-dali is not installed (pip install '.[dali]')"


def _missing_dicom() -> str | None:
    missing = [m for m in ("pydicom", "highdicom", "pylibjpeg", "libjpeg", "openjpeg")
               if importlib.util.find_spec(m) is None]
    return f"the dicom extra is not installed ({', '.join(missing)} missing; pip install '.[dicom]')" if missing else None


def _missing_video() -> str | None:
    try:
        importlib.import_module("av")
    except Exception as err:  # noqa: BLE001 - not installed, or installed without its FFmpeg libraries
        return f"PyAV is not usable ({err}; pip install '.[video]')"
    return None


# marker -> a check that returns why the requirement is missing (None: present). Checked only when
# a collected test carries the marker.
REQUIREMENTS: dict[str, Callable[[], str | None]] = {
    "needs_data": missing_data,
    "needs_triton": _missing_triton,
    "needs_perf_analyzer": _missing_perf_analyzer,
    "needs_trt_builder": _missing_trt_builder,
    "needs_dali": _missing_dali,
    "needs_dicom": _missing_dicom,
    "needs_video": _missing_video,
}


def capability_reasons(markers: set[str]) -> dict[str, str]:
    """Paired marker -> why it skips on this host, for those of ``markers`` that skip here."""
    needed = {cap for marker in markers for cap in PAIRED[ABSENT.get(marker, marker)][0]}
    present = {cap: CAPABILITIES[cap]() for cap in sorted(needed)}
    reasons = {}
    for marker in sorted(markers):
        twin = ABSENT.get(marker)
        caps, missing = PAIRED[twin or marker]
        have = all(present[c] for c in caps)
        if twin is None and not have:
            reasons[marker] = missing
        elif twin is not None and have:
            reasons[marker] = (f"{' and '.join(caps)} present here: this test covers the path without "
                               f"{'them' if len(caps) > 1 else 'it'}; the {twin} tests run instead")
    return reasons


def pytest_collection_modifyitems(config, items):
    used = {m for item in items for m in (*PAIRED, *ABSENT, *REQUIREMENTS) if m in item.keywords}
    reasons = capability_reasons({m for m in used if m in PAIRED or m in ABSENT})
    if not config.getoption("--run-slow"):
        reasons["slow"] = "slow test: run with --run-slow"
    for marker in sorted(m for m in used if m in REQUIREMENTS):
        reason = REQUIREMENTS[marker]()
        if reason is not None:
            reasons[marker] = reason
    for item in items:
        mine = [(marker, reason) for marker, reason in reasons.items() if marker in item.keywords]
        if not mine:
            continue
        # a test that may skip here skips with that reason, remembered as the one CI accepts for it;
        # otherwise with its first missing requirement (a failure under CI)
        allowed = [reason for marker, reason in mine if marker in CI_MAY_SKIP]
        if allowed:
            item.stash[_ALLOWED_SKIP] = allowed[0]
        item.add_marker(pytest.mark.skip(reason=allowed[0] if allowed else mine[0][1]))


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _ci_failure(reason: str) -> str:
    return (f"skipped under CI (CI={os.environ.get('CI')}), which must run this test: {reason}\n"
            f"(only the skips that tests/conftest.py applies for {', '.join(sorted(CI_MAY_SKIP))} are allowed there)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if CI and report.skipped and not hasattr(report, "wasxfail") \
            and _skip_reason(report) != item.stash.get(_ALLOWED_SKIP, None):
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
