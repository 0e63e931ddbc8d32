"""Project structure rules that a reader relies on: imports point one way, and only the
settings read the environment."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# What each package may not import (docs/design.md): apps -> dataflow, grpc_server -> di
# -> facestream. No file is exempt.
FORBIDDEN = {
    "facestream": {"di", "dataflow", "grpc_server", "apps"},
    "di": {"dataflow", "grpc_server", "apps"},
    "dataflow": {"grpc_server", "apps"},
    "grpc_server": {"dataflow", "apps"},
    "apps": set(),
}


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
        bad = imported_packages(path) & FORBIDDEN[package]
        if bad:
            wrong[str(relative)] = sorted(bad)
    assert not wrong, f"imports against docs/design.md's direction: {wrong}"


def test_only_the_settings_read_the_environment():
    readers = []
    for package in ("facestream", "di", "dataflow", "grpc_server"):
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text()
            if "os.environ" in text or "os.getenv" in text:
                readers.append(str(path.relative_to(ROOT)))
    assert readers == ["di/container.py"], readers
