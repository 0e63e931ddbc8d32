"""The Makefile: `make test` and `make demo` install only when pyproject.toml or the
lock changed."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


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
