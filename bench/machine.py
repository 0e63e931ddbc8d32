"""The machine a figure was measured on: the CPU model and the instruction sets that decide
how fast TensorFlow runs the models (and, between kernels, their last bits). Every report
names them, since sessions run on different CPUs (AMD EPYC, Intel Xeon with AMX)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

RELEVANT_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)


def _cpuinfo_field(name: str) -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return ""


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), or what the platform module knows."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The relevant instruction sets this CPU has, in RELEVANT_FLAGS order."""
    flags = set(_cpuinfo_field("flags").split())
    return [flag for flag in RELEVANT_FLAGS if flag in flags]


def describe_machine() -> str:
    """One line for a report: model, architecture, cores, relevant flags, Python."""
    flags = ", ".join(cpu_flags()) or "no AVX2"
    return (
        f"{cpu_model()} ({platform.machine()}, {os.cpu_count()} cores; {flags}), "
        f"Python {platform.python_version()}"
    )
