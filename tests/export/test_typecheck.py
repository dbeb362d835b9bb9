"""The TensorRT code type-checks against TensorRT's API: mypy reads ``export/tensorrt.py`` and
``export/torch_tensorrt.py`` with the ``tensorrt-stubs`` type stubs, which ``make install`` unpacks
into ``$VENV/typestubs`` (not into site-packages: a ``tensorrt`` folder there would make
``import tensorrt`` look possible). Torch-TensorRT has no stubs: its own calls are not checked,
only how ``export/torch_tensorrt.py`` uses torch, numpy and ``export.tensorrt``."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STUBS = Path(sys.prefix) / "typestubs"  # make install: pip download --no-deps tensorrt-stubs, unzipped
CHECKED = ("export/tensorrt.py", "export/torch_tensorrt.py")


def _repaired_stubs(tmp_path: Path) -> Path:
    """A copy of the stubs in which the few generated signatures of tensorrt-stubs 10.13 that are not
    Python (a parameter named ``in``, defaults before non-defaults) become ``(*args, **kwargs) -> Any``."""
    if not (STUBS / "tensorrt" / "__init__.pyi").is_file():
        pytest.skip(f"tensorrt-stubs are not unpacked in {STUBS} (make install does it)")
    root = shutil.copytree(STUBS, tmp_path / "stubs")
    pattern = re.compile(r"^(\s*)def (\w+)\((.*)\)\s*(->.*)?:\s*(.*)$")
    for pyi in root.rglob("*.pyi"):
        lines = pyi.read_text().splitlines()
        for i, line in enumerate(lines):
            match = pattern.match(line)
            if not match:
                continue
            try:
                ast.parse(line.strip() if line.rstrip().endswith("...") else line.strip() + " ...")
            except SyntaxError:
                indent, name, _, _, tail = match.groups()
                lines[i] = f"{indent}def {name}(*args: typing.Any, **kwargs: typing.Any) -> typing.Any:{' ' + tail if tail else ''}"
        pyi.write_text("\n".join(lines) + "\n")
    return root


def test_tensorrt_api_use_type_checks_against_stubs(tmp_path):
    """Every TensorRT call in the checked files exists with these argument types in TensorRT 10.13."""
    pytest.importorskip("mypy", reason="mypy is not installed (pip install '.[dev]')")
    stubs = _repaired_stubs(tmp_path)
    # a probe that misuses the API proves the stubs were really read (one mypy run for all files)
    probe = tmp_path / "probe.py"
    probe.write_text("import tensorrt as trt\n\ndef f() -> None:\n    trt.BuilderFlag.NOT_A_FLAG\n")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--follow-imports=silent", "--ignore-missing-imports", "--no-incremental",
         "--cache-dir", str(tmp_path / "mypy-cache"), *CHECKED, str(probe)],
        capture_output=True, text=True, timeout=300, cwd=REPO,
        env={"MYPYPATH": str(stubs), "PATH": "/usr/bin:/bin"},
    )
    ours = [line for line in result.stdout.splitlines() if line.startswith("export/")]
    assert not ours, "\n".join(ours)
    assert "NOT_A_FLAG" in result.stdout, result.stdout[-2000:]
    assert "syntax" not in result.stdout, result.stdout[-2000:]  # the stubs parsed: the files were really checked
