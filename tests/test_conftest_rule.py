"""The rule of tests/conftest.py: under CI a skip is a failure unless it is the one the conftest
applied for a marker that may skip (needs_cuda / needs_no_cuda, needs_tensorrt / needs_no_tensorrt,
needs_torch_tensorrt / needs_no_torch_tensorrt, slow), and ``CI=true`` passes on a GPU host with the
data-center TensorRT as well as on this CPU machine.

A GPU host is simulated by faking what the conftest's probes look at, never the probes themselves:
``torch.cuda.is_available`` answers True and a ``tensorrt`` package is importable. Nothing runs on
the simulated GPU: only tests that skip there are run under it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch  # imported before any pytester run: pytester drops the modules a run imported, torch can't be re-imported

REPO_ROOT = Path(__file__).resolve().parents[1]

# a small test file with one test per case the rule decides
CASES = textwrap.dedent('''
    import pytest

    @pytest.mark.needs_cuda
    def test_gpu_path():
        pass

    @pytest.mark.needs_no_cuda
    def test_cpu_path():
        pass

    @pytest.mark.needs_tensorrt
    def test_trt_path():
        pass

    @pytest.mark.needs_no_tensorrt
    def test_no_trt_path():
        pass

    @pytest.mark.needs_cuda
    def test_gpu_path_that_skips_itself():
        pytest.skip("torch_tensorrt is not installed")

    @pytest.mark.needs_cuda
    @pytest.mark.needs_data
    def test_gpu_path_with_data():
        pass

    def test_bare_skip():
        pytest.skip("no tritonserver")

    @pytest.mark.slow
    def test_slow():
        pass
''')

# where the data-center TensorRT and a GPU are present ("gpu") and where neither is ("cpu"):
# test -> (outcome without CI, outcome under CI)
EXPECTED = {
    "cpu": {
        "test_gpu_path": ("skipped", "skipped"),
        "test_cpu_path": ("passed", "passed"),
        "test_trt_path": ("skipped", "skipped"),
        "test_no_trt_path": ("passed", "passed"),
        "test_gpu_path_that_skips_itself": ("skipped", "skipped"),  # its needs_cuda skip comes first
        "test_gpu_path_with_data": ("skipped", "skipped"),  # no GPU: the data are not the reason
        "test_bare_skip": ("skipped", "failed"),
        "test_slow": ("skipped", "skipped"),
    },
    "gpu": {
        "test_gpu_path": ("passed", "passed"),
        "test_cpu_path": ("skipped", "skipped"),  # allowed: test_gpu_path runs instead
        "test_trt_path": ("passed", "passed"),
        "test_no_trt_path": ("skipped", "skipped"),
        "test_gpu_path_that_skips_itself": ("skipped", "failed"),  # a needs_cuda marker is no blanket pass
        "test_gpu_path_with_data": ("skipped", "failed"),  # runs here, so it must have its data
        "test_bare_skip": ("skipped", "failed"),
        "test_slow": ("skipped", "skipped"),
    },
}


def simulate_gpu_host(monkeypatch, where: Path, *, tensorrt: bool = True) -> None:
    """torch sees a CUDA GPU; with ``tensorrt`` a (fake, empty) data-center ``tensorrt`` package imports."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    if tensorrt:
        (where / "tensorrt").mkdir(parents=True, exist_ok=True)
        (where / "tensorrt" / "__init__.py").write_text('__version__ = "10.13.0"  # simulated\n')
        monkeypatch.syspath_prepend(str(where))


def outcomes(reprec) -> dict[str, str]:
    """test name -> its outcome (a skip or failure at setup counts, as pytest reports it)."""
    result = {}
    for report in reprec.getreports("pytest_runtest_logreport"):
        name = report.nodeid.rsplit("::", 1)[-1]
        if report.when == "call" or report.outcome != "passed":
            result.setdefault(name, report.outcome)
    return result


def run_rule(pytester, monkeypatch, *, ci: bool) -> tuple[dict[str, str], object]:
    pytester.makeconftest((REPO_ROOT / "tests" / "conftest.py").read_text())
    pytester.makepyfile(test_cases=CASES)
    monkeypatch.setenv("BANET_DATA", str(pytester.path / "no-data-here"))
    if ci:
        monkeypatch.setenv("CI", "true")
    else:
        monkeypatch.delenv("CI", raising=False)
    reprec = pytester.inline_run("-p", "no:cacheprovider", "-W", "ignore::pytest.PytestUnknownMarkWarning")
    return outcomes(reprec), reprec


@pytest.mark.parametrize("ci", [False, True], ids=["local", "CI=true"])
@pytest.mark.parametrize("host", ["cpu", "gpu"])
def test_rule_on_each_host(pytester, monkeypatch, host, ci):
    if host == "gpu":
        simulate_gpu_host(monkeypatch, pytester.path / "fake_site")
    else:  # this machine may have anything: make the CPU host certain too
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    got, reprec = run_rule(pytester, monkeypatch, ci=ci)
    want = {name: pair[ci] for name, pair in EXPECTED[host].items()}
    assert got == want
    reasons = {r.nodeid.rsplit("::", 1)[-1]: str(r.longrepr) for r in reprec.getreports("pytest_runtest_logreport")
               if r.outcome != "passed"}
    if host == "gpu":
        assert "the needs_cuda tests run instead" in reasons["test_cpu_path"]
        assert "the needs_tensorrt tests run instead" in reasons["test_no_trt_path"]
    else:
        assert "no CUDA GPU" in reasons["test_gpu_path"]
    if ci:  # a failure says what skipped and why
        assert "which must run this test: no tritonserver" in reasons["test_bare_skip"]


def test_gpu_without_tensorrt_runs_the_no_tensorrt_path(pytester, monkeypatch):
    simulate_gpu_host(monkeypatch, pytester.path / "fake_site", tensorrt=False)
    got, _ = run_rule(pytester, monkeypatch, ci=True)
    assert got["test_gpu_path"] == "passed" and got["test_cpu_path"] == "skipped"
    assert got["test_trt_path"] == "skipped" and got["test_no_trt_path"] == "passed"


# the project's tests written for "no GPU / no TensorRT here": on a GPU host with the data-center TensorRT
# (and no Torch-TensorRT) they skip, and CI accepts those skips
NO_GPU_TESTS = [
    "tests/bench/test_backends.py::test_cuda_only_paths_are_skipped_with_a_reason",
    "tests/bench/test_backends.py::test_tensorrt_backend_without_a_gpu_says_why",
    "tests/references/test_gpu_check.py::test_the_full_check_needs_cuda",
    "tests/export/test_export_cli.py::test_cli_writes_manifest_and_trtexec_commands",
    "tests/export/test_export_cli.py::test_require_engine_fails_without_tensorrt",
    "tests/export/test_export_tensorrt.py::test_unknown_rtx_target_is_refused_up_front",
    "tests/export/test_export_tensorrt.py::test_torch_tensorrt_refuses_int8_route",  # needs Torch-TensorRT too
    "tests/export/test_export_tensorrt.py::test_torch_tensorrt_route",
]

FAKE_GPU_PLUGIN = '''
"""-p plugin: torch sees one CUDA GPU (an H200 by name; nothing may run on it)."""
import torch

torch.cuda.is_available = lambda: True
torch.cuda.device_count = lambda: 1
torch.cuda.get_device_name = lambda *args, **kwargs: "NVIDIA H200 (simulated)"
torch.cuda.get_device_capability = lambda *args, **kwargs: (9, 0)
'''


def test_project_no_gpu_tests_pass_ci_on_a_gpu_tensorrt_host(tmp_path):
    """The project's own tests, in a pytest process that sees a GPU and the data-center TensorRT."""
    site = tmp_path / "site"
    (site / "tensorrt").mkdir(parents=True)
    (site / "tensorrt" / "__init__.py").write_text('__version__ = "10.13.0"  # simulated\n')
    (site / "fake_gpu_host.py").write_text(FAKE_GPU_PLUGIN)
    report = tmp_path / "report.json"
    env = {**os.environ, "CI": "true", "PYTHONPATH": os.pathsep.join([str(site), str(REPO_ROOT)])}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "fake_gpu_host", "-p", "no:cacheprovider", "-q", "-rA",
         "--junit-xml", str(report.with_suffix(".xml")), *NO_GPU_TESTS],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    tail = proc.stdout[-3000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail
    # every one of them skipped (none ran on the fake GPU), each with the conftest's reason
    import xml.etree.ElementTree as ET

    cases = ET.parse(report.with_suffix(".xml")).getroot().iter("testcase")
    skipped = {case.get("name"): case.find("skipped").get("message") for case in cases
               if case.find("skipped") is not None}
    assert sorted(skipped) == sorted(t.rsplit("::", 1)[-1] for t in NO_GPU_TESTS), tail
    assert all("run instead" in why or "torch_tensorrt is not installed" in why for why in skipped.values()), \
        json.dumps(skipped, indent=1)


REQUIREMENT_CASES = textwrap.dedent('''
    import pytest

    @pytest.mark.needs_video
    def test_video_path():
        import av  # noqa: F401
''')


@pytest.mark.parametrize("ci", [False, True], ids=["local", "CI=true"])
def test_a_missing_requirement_skips_locally_and_fails_under_ci(pytester, monkeypatch, ci):
    """needs_video with PyAV hidden (``sys.modules['av'] = None``: its import fails): a skip with the reason on a
    user's machine, a failure with the same reason under CI; with PyAV there it runs."""
    pytester.makeconftest((REPO_ROOT / "tests" / "conftest.py").read_text())
    pytester.makepyfile(test_requirements=REQUIREMENT_CASES)
    monkeypatch.setenv("CI", "true") if ci else monkeypatch.delenv("CI", raising=False)
    args = ("-p", "no:cacheprovider")
    if importlib.util.find_spec("av") is not None:  # present: the test runs (a failure if the probe were wrong)
        assert outcomes(pytester.inline_run(*args)) == {"test_video_path": "passed"}
    monkeypatch.setitem(sys.modules, "av", None)
    reprec = pytester.inline_run(*args)
    assert outcomes(reprec) == {"test_video_path": "failed" if ci else "skipped"}
    (report,) = [r for r in reprec.getreports("pytest_runtest_logreport") if r.outcome != "passed"]
    assert "PyAV is not usable" in str(report.longrepr) and "pip install '.[video]'" in str(report.longrepr)
    if ci:
        assert "which must run this test" in str(report.longrepr)
