"""Letting go of a mapped file's resident pages: they leave the process, the bytes stay."""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np
import pytest

from apps.processes import wait_until
from facestream.mapped_pages import (
    read_only_mappings,
    release_mapped_pages,
    releasing_mapped_pages,
)

SIZE = 32 * 1024 * 1024


def resident_bytes(path: Path) -> int:
    """This process's resident bytes of its mappings of `path` (from /proc/self/smaps)."""
    wanted, total, inside = str(path.resolve()), 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5 and not fields[0].endswith(":"):
            inside = len(fields) == 6 and fields[5] == wanted
        elif inside and fields[0] == "Rss:":
            total += int(fields[1]) * 1024
    return total


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(np.random.default_rng(0).bytes(SIZE))
    return path


def test_read_pages_are_let_go_and_read_again_unchanged(weights):
    with weights.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        before = bytes(mapped)  # every page read: resident
        assert resident_bytes(weights) >= 0.9 * SIZE
        assert read_only_mappings(weights) and release_mapped_pages(weights) >= SIZE
        assert resident_bytes(weights) <= 0.1 * SIZE
        assert bytes(mapped) == before == weights.read_bytes()


def test_a_writable_mapping_keeps_its_pages_and_its_changes(weights):
    with (
        weights.open("r+b") as file,
        mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_COPY) as mapped,
    ):
        mapped[:4] = b"mine"  # a private change, in this process's pages only
        assert read_only_mappings(weights) == []
        assert release_mapped_pages(weights) == 0
        assert mapped[:4] == b"mine"


def test_while_releasing_pages_read_are_let_go_before_the_block_ends(weights):
    with (
        weights.open("rb") as file,
        mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped,
        releasing_mapped_pages(weights, every_s=0.01),
    ):
        assert bytes(mapped) == weights.read_bytes()  # every page read
        wait_until(lambda: resident_bytes(weights) <= 0.1 * SIZE, 30, "the pages to be let go")
        assert mapped[SIZE - 4 :] == weights.read_bytes()[-4:]  # read again from the file
