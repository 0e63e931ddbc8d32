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
    "avx_vnni",
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


def cpu_mhz() -> float:
    """The CPU's clock as /proc/cpuinfo reports it (MHz), 0.0 when unknown."""
    try:
        return float(_cpuinfo_field("cpu MHz"))
    except ValueError:
        return 0.0


def peak_gflops(precision: str) -> float:
    """An upper bound of this CPU's arithmetic, GFLOP/s over all cores: cores x clock x FLOP
    per cycle. Per cycle and core, assumed: fp32 with AVX-512, two 512-bit FMA units (64;
    CPUs with one, such as AMD Zen 4, reach half); with AVX2, two 256-bit FMA units (32);
    bf16 doubles fp32 (AVX-512 BF16 dot products) and AMX reaches 1024; int8 (operations,
    not FLOP) quadruples fp32 with VNNI dot products, 2048 with AMX. 0.0 when unknown."""
    flags = set(cpu_flags())
    fp32 = 64 if "avx512f" in flags else 32 if "avx2" in flags else 0
    per_cycle = fp32
    if precision == "bf16":
        per_cycle = 1024 if "amx_bf16" in flags else 2 * fp32 if "avx512_bf16" in flags else 0
    if precision == "int8":
        vnni = "avx512_vnni" in flags or "avx_vnni" in flags
        per_cycle = 2048 if "amx_int8" in flags else 4 * fp32 if vnni else 0
    return (os.cpu_count() or 1) * cpu_mhz() / 1000 * per_cycle
