"""Project structure rules that a reader relies on: imports point one way, the product's
tests need nothing from the benchmarks, and only the settings read the environment."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# What each package may not import (docs/design.md): apps -> di -> dataflow, grpc_server
# -> facestream. `di` holds each process's composition root: it builds the parts of
# dataflow/ and grpc_server/, which receive them ready and read no settings.
FORBIDDEN = {
    "facestream": {"di", "dataflow", "grpc_server", "apps"},
    "dataflow": {"di", "grpc_server", "apps"},
    "grpc_server": {"di", "dataflow", "apps"},
    "di": {"apps"},
    "apps": set(),
}
# The processes' entry points are the only files of those packages that call their
# composition root.
ENTRY_POINTS = {"dataflow/__init__.py": {"di"}, "grpc_server/__main__.py": {"di"}}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_one_way(package):
    wrong = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        relative = path.relative_to(ROOT)
        bad = imported_packages(path) & FORBIDDEN[package] - ENTRY_POINTS.get(str(relative), set())
        if bad:
            wrong[str(relative)] = sorted(bad)
    assert not wrong, f"imports against docs/design.md's direction: {wrong}"


def test_the_product_tests_need_nothing_from_the_benchmarks():
    # What both use (the launch kit, the photos, the agreement of two analyzers, the test
    # camera) lives in apps/ and facestream/; the benchmarks' own tests are in bench/tests.
    wrong = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "tests").rglob("*.py"))
        if "bench" in imported_packages(path)
    ]
    assert not wrong, wrong


def test_only_the_settings_read_the_environment():
    readers = []
    for package in ("facestream", "di", "dataflow", "grpc_server"):
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text()
            if "os.environ" in text or "os.getenv" in text:
                readers.append(str(path.relative_to(ROOT)))
    assert readers == ["di/environment.py"], readers


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_entry_points_call_their_composition_root(entry):
    # Exempt only because it starts the process: without it the exemption would be stale.
    assert imported_packages(ROOT / entry) & ENTRY_POINTS[entry]
