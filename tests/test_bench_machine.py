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
