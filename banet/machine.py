"""The machine a result was measured on: CPU model and usable cores (standard library only).

Every results file (banet-info, banet-eval reports, export reports, the bench) describes its
machine through these functions, so the same machine is always named the same way.
"""

from __future__ import annotations

import os
import platform


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
