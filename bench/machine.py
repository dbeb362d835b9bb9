"""Describe the machine a benchmark ran on: CPU model and cores, GPU and driver, library versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
from datetime import datetime, timezone

from banet.machine import cpu_cores, cpu_flags, cpu_model

LIBRARIES = ("torch", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "tensorrt", "torch-tensorrt",
             "tritonclient", "nvidia-pytriton", "pillow")


def gpu_info() -> dict:
    """GPU name and driver from nvidia-smi, or ``{"gpu": None, "reason": ...}``."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError) as err:
        return {"gpu": None, "reason": f"nvidia-smi not usable: {type(err).__name__}"}
    if not out:
        return {"gpu": None, "reason": "nvidia-smi listed no GPU"}
    name, driver, memory = (part.strip() for part in out[0].split(",")[:3])
    return {"gpu": name, "driver": driver, "gpu_memory": memory, "gpu_count": len(out)}


def library_versions() -> dict[str, str | None]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine_info() -> dict:
    return {
        "cpu": cpu_model(),
        "cores": cpu_cores(),
        "cpu_flags": cpu_flags(),  # the int8-relevant ISA flags (banet.machine.INT8_ISA_FLAGS) present
        "hostname": platform.node(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **gpu_info(),
        "libraries": library_versions(),
        # other jobs on shared cores move absolute times: the 1/5/15-minute load average says how much
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def machine_slug(info: dict) -> str:
    """Short file-name-safe machine tag, e.g. ``intel-xeon-processor-2c`` or ``nvidia-h200``."""
    base = info.get("gpu") or info["cpu"]
    base = re.sub(r"\((r|tm)\)|cpu|@.*$|processor\s*$", "", base, flags=re.I)
    slug = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")[:40] or "machine"
    return slug if info.get("gpu") else f"{slug}-{info['cores']}c"
