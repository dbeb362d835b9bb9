"""The machine a result was measured on: CPU, cores, GPU and driver, library versions, load (standard library only).

Every results file (banet-info, banet-eval reports, the bench and the reference commands) describes its
machine through these functions (:func:`machine_info` for a whole record), so the same machine is always
named the same way. The one module of that name (the bench's former copy was merged here).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
from datetime import datetime, timezone


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo``, else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_cores() -> int:
    """Cores this process may use (affinity), which is what its timings saw."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


INT8_ISA_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "amx_tile")
"""The ``/proc/cpuinfo`` flags that decide which int8 kernels ONNX Runtime (MLAS) can use on x86."""


def cpu_flags(wanted: tuple[str, ...] = INT8_ISA_FLAGS) -> list[str]:
    """Which of ``wanted`` the CPU reports in ``/proc/cpuinfo`` (empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [f for f in wanted if f in have]
    except OSError:
        pass
    return []


def has_int8_dot_product() -> bool:
    """True on CPUs with VNNI (AVX512-VNNI, AVX-VNNI) or AMX: u8 x s8 products accumulate in int32.

    Without it (plain AVX2 / AVX-512BW) x86 int8 kernels sum pairs of u8 x s8 products in int16
    (``vpmaddubsw``), which can saturate unless weights use 7 bits (ONNX Runtime's ``reduce_range``).
    """
    return any(f in cpu_flags() for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


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
        "cpu_flags": cpu_flags(),  # the int8-relevant ISA flags (INT8_ISA_FLAGS) present
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
