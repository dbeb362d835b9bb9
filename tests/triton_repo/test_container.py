"""deploy/Dockerfile installs exactly what the Triton models import, on the Triton release banet.triton_args names.

Docker is not on the development machines or in CI, so the image is not built here: these tests read the file.
The import list is computed from the sources (ast), following every ``banet`` module the models import, with
function-level imports included (``simplejpeg`` and ``onnxruntime`` are imported lazily).
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
PROVIDED_BY_THE_IMAGE = {"triton_python_backend_utils": "Triton's Python backend", "nvidia.dali": "Triton's dali backend"}


def _imports(path: Path) -> set[str]:
    """Absolute module names imported anywhere in ``path`` (``from a import b`` gives ``a`` and ``a.b``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            if node.module != "__future__":
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _banet_file(module: str) -> Path | None:
    parts = module.split(".")
    for candidate in (ROOT.joinpath(*parts).with_suffix(".py"), ROOT.joinpath(*parts, "__init__.py")):
        if candidate.is_file():
            return candidate
    return None


def third_party_imports(entry_points: list[Path]) -> dict[str, set[str]]:
    """Top-level third-party modules -> the files importing them, over ``entry_points`` and the banet modules
    they reach."""
    found: dict[str, set[str]] = {}
    todo, seen = list(entry_points), set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path):
            top = name.split(".")[0]
            if top == "banet":
                target = _banet_file(name)
                if target is not None:  # `from banet import spec` names a module; `from banet.x import f` a name
                    todo.append(target)
            elif top in sys.stdlib_module_names:
                continue
            elif any(name == p or name.startswith(p + ".") for p in PROVIDED_BY_THE_IMAGE) or name == "nvidia":
                continue
            else:
                found.setdefault(top, set()).add(str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path))
    return found


def _models() -> list[Path]:
    files = sorted((ROOT / "triton_repo").glob("*/1/*.py"))
    assert {p.name for p in files} == {"model.py", "dali.py"}, files
    return files


def _install_line() -> list[str]:
    lines = [line for line in DOCKERFILE.read_text().splitlines() if line.startswith("RUN ") and " pip install " in line]
    assert len(lines) == 1, lines
    words = shlex.split(lines[0])
    return [w for w in words[words.index("install") + 1:] if not w.startswith("-")]


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_dockerfile_installs_exactly_what_the_triton_models_import():
    imported = third_party_imports(_models())
    # the lazy ones count: the hot path's JPEG decoder (the route the export's gate scored) and ORT in banet_model
    assert {"numpy", "PIL", "simplejpeg", "onnxruntime"} <= set(imported), imported
    distributions = importlib.metadata.packages_distributions()
    needed = {}
    for module, files in imported.items():
        assert module in distributions, f"{module} (imported by {sorted(files)}) is not installed here to map it"
        (dist,) = distributions[module]
        needed[_normalize(dist)] = module
    requirements = {_normalize(re.match(r"[A-Za-z0-9._-]+", r).group(0)): r for r in _install_line()}
    assert set(requirements) == set(needed), (
        f"deploy/Dockerfile installs {sorted(requirements)}, the Triton models import {sorted(needed)}")


def test_the_image_is_the_triton_release_and_carries_banet():
    from banet.triton_args import TRITON_RELEASE

    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG TRITON_VERSION=(\S+)$", text, re.MULTILINE).group(1) == TRITON_RELEASE
    assert re.search(r"^FROM (\S+)$", text, re.MULTILINE).group(1) == "nvcr.io/nvidia/tritonserver:${TRITON_VERSION}-py3"
    assert re.search(r"^COPY banet (\S+)/banet$", text, re.MULTILINE).group(1) == "/opt/banet"
    # PYTHONPATH extended (the dali backend's DALI may be on it), with the folder holding banet/
    assert re.search(r"^ENV PYTHONPATH=/opt/banet\$\{PYTHONPATH:\+:\$\{PYTHONPATH\}\}$", text, re.MULTILINE)
    ignore = (ROOT / "deploy" / "Dockerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("*") + 1:].count("!banet") == 1  # the build context sends banet/ only
    import yaml

    deployment = next(d for d in yaml.safe_load_all((ROOT / "deploy" / "k8s" / "deployment.yaml").read_text())
                      if d["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"].endswith(f":{TRITON_RELEASE}")


def test_the_import_scan_follows_banet_and_lazy_imports(tmp_path):
    """The scanner itself: a module-level banet import is followed into banet/processing.py, where simplejpeg is
    imported inside a function; an unknown third-party import is reported with its file."""
    model = tmp_path / "model.py"
    model.write_text("import os\nfrom banet import processing\n\ndef f():\n    import some_new_dependency\n")
    found = third_party_imports([model])
    assert "simplejpeg" in found and "banet/processing.py" in found["simplejpeg"]
    assert found["some_new_dependency"] == {str(model)} and "os" not in found
