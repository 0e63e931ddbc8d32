"""Reports name the CPU and the instruction sets that decide the models' speed."""

from __future__ import annotations

from pathlib import Path

from bench.machine import RELEVANT_FLAGS, cpu_flags, cpu_model, describe_machine


def test_reports_name_the_cpu_model_and_its_relevant_flags():
    info = Path("/proc/cpuinfo").read_text().splitlines()
    [model] = {line.split(":", 1)[1].strip() for line in info if line.startswith("model name")}
    [flags_line] = {line for line in info if line.startswith("flags")} or {""}
    present = set(flags_line.partition(":")[2].split())
    assert cpu_model() == model
    assert cpu_flags() == [flag for flag in RELEVANT_FLAGS if flag in present]
    described = describe_machine()
    assert described.startswith(model)
    for flag in cpu_flags():
        assert flag in described


def test_peak_arithmetic_follows_the_cpus_flags(monkeypatch):
    import bench.machine as machine

    monkeypatch.setattr(machine, "cpu_mhz", lambda: 2000.0)
    monkeypatch.setattr(machine.os, "cpu_count", lambda: 2)
    cases = {
        ("avx2",): (2 * 2 * 32, 0.0, 0.0),
        ("avx2", "avx_vnni"): (2 * 2 * 32, 0.0, 2 * 2 * 128),
        ("avx2", "avx512f"): (2 * 2 * 64, 0.0, 0.0),
        ("avx2", "avx512f", "avx512_vnni", "avx512_bf16"): (2 * 2 * 64, 2 * 2 * 128, 2 * 2 * 256),
        ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8"): (
            2 * 2 * 64,
            2 * 2 * 1024,
            2 * 2 * 2048,
        ),
    }
    for flags, (fp32, bf16, int8) in cases.items():
        monkeypatch.setattr(machine, "cpu_flags", lambda flags=flags: list(flags))
        assert machine.peak_gflops("fp32") == fp32
        assert machine.peak_gflops("bf16") == bf16
        assert machine.peak_gflops("int8") == int8
