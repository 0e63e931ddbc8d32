"""The repository stands alone: a fresh clone with nothing beside it collects the whole
suite, and no file reaches outside the repository except for the optional shared photos."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.commands import PROJECT_ROOT

# The only files that may name ../shared: where the optional photo set is located (every
# user falls back to the public photos without it), and the docs.
MAY_NAME_SHARED = {
    "apps/image_sources.py",
    "docs/test-images.md",
    "docs/design.md",
    "docs/getting-started.md",
    "docs/performance.md",
    "tests/conftest.py",  # the fixtures' docstrings say where the optional set is
    "tests/test_grpc_e2e.py",
    "tests/test_repository.py",  # a comment naming the MANIFEST its face counts come from
}

# ../shared in text, or a path built with a "shared" part.
SHARED_PATH = re.compile(r"\.\./shared|[\"']shared[\"']\s*/|/\s*[\"']shared[\"']")


def tracked_files() -> list[str]:
    listed = subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), "ls-files"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if listed.returncode != 0:
        pytest.skip(f"{PROJECT_ROOT} is not a git checkout: {listed.stderr.strip()}")
    return listed.stdout.splitlines()


def test_a_fresh_clone_without_anything_beside_it_collects_every_test(tmp_path):
    tracked_files()
    clone = tmp_path / "lonely" / "facestream"
    subprocess.run(
        ["git", "clone", "--quiet", str(PROJECT_ROOT), str(clone)], check=True, timeout=120
    )
    assert not (clone.parent.parent / "shared").exists()
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = collected.stdout + collected.stderr
    assert collected.returncode == 0, output[-3000:]
    # pytest reports collection failures as "ERROR <file>" lines and "N errors".
    assert not re.search(r"^ERROR |\b\d+ errors?\b", output, re.MULTILINE), output[-3000:]
    count = re.search(r"(\d+) tests? collected", output)
    assert count and int(count.group(1)) > 100, output[-3000:]


def test_nothing_but_the_optional_photo_fixture_names_the_shared_folder():
    naming = []
    for name in tracked_files():
        path = PROJECT_ROOT / name
        if not path.is_file() or path.suffix not in {".py", ".md", ".toml", ".yml", ".cfg", ""}:
            continue
        text = path.read_text(errors="replace")
        if SHARED_PATH.search(text) and name not in MAY_NAME_SHARED:
            naming.append(name)
    assert not naming, f"files that reach outside the repository: {naming}"
