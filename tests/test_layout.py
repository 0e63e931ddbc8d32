"""Project structure rules that a reader relies on: import direction and the venv stamp."""

from __future__ import annotations

import ast
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# What each package may not import (docs/design.md: dataflow -> di -> facestream,
# grpc_server -> di).
FORBIDDEN = {
    "facestream": {"di", "dataflow", "grpc_server"},
    "di": {"dataflow", "grpc_server"},
    "dataflow": {"grpc_server"},
    "grpc_server": {"dataflow"},
}
# Entry points compose everything, so they may reach upwards.
ENTRY_POINTS = {Path("facestream/cli.py"), Path("facestream/demo.py")}


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
        if relative in ENTRY_POINTS:
            continue
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


def test_the_venv_is_not_reinstalled_when_pyproject_and_lock_are_unchanged():
    venv = ROOT / ".venv"
    if Path(sys.prefix).resolve() != venv.resolve():
        pytest.skip("tests are not running from the project's .venv (make test)")
    inputs = (ROOT / "pyproject.toml").read_bytes() + (ROOT / "requirements/dev.lock").read_bytes()
    digest = hashlib.sha256(inputs).hexdigest()[:16]
    stamp = f".venv/.installed-{digest}"
    assert (ROOT / stamp).is_file()
    question = subprocess.run(["make", "-q", stamp], cwd=ROOT, capture_output=True, timeout=60)
    assert question.returncode == 0, (
        "make would reinstall the venv although pyproject and the lock are unchanged"
    )
