"""Letting go of the pages of a file this process has mapped, once they are not needed.

OpenVINO maps a model's weight file (`model.bin`) into memory, and its CPU plugin reads the
weights once to repack them into a layout of its own, during the first inference; the
mapping stays, and every page it read stays resident in the process beside the repacked
copy: two copies of each weight (1.5 GB more for exact mode's shared trunk). The pages are
the file's, read-only and shared: told that the process no longer needs them
(`madvise(MADV_DONTNEED)`), the kernel unmaps them from this process, they stay in the OS's
page cache as long as memory allows, and a later read of one maps it again from there (or
from the file). Nothing is lost, whatever reads them next.

Linux only (it reads `/proc/self/maps`); elsewhere nothing is released.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MADV_DONTNEED = 4
# While a model is compiled and first run, its pages are let go this often: the plugin
# repacks one layer at a time, so no more than about a layer's pages are ever resident.
RELEASE_EVERY_S = 0.05


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return libc


_LIBC = _libc()


def read_only_mappings(path: Path) -> list[tuple[int, int]]:
    """The (start, end) addresses of this process's read-only mappings of `path`."""
    wanted = str(path.resolve())
    try:
        lines = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return []
    ranges = []
    for line in lines:
        fields = line.split(maxsplit=5)
        # Writable mappings may hold changes of their own: never let go of those.
        if len(fields) == 6 and fields[5] == wanted and "w" not in fields[1]:
            start, end = (int(address, 16) for address in fields[0].split("-"))
            ranges.append((start, end))
    return ranges


def release_mapped_pages(path: Path) -> int:
    """Let go of this process's resident pages of its read-only mappings of `path`; the
    bytes of the mappings concerned (0 where there are none, or off Linux)."""
    if _LIBC is None:
        return 0
    released = 0
    for start, end in read_only_mappings(path):
        if _LIBC.madvise(start, end - start, MADV_DONTNEED) == 0:
            released += end - start
    return released


@contextmanager
def releasing_mapped_pages(path: Path, every_s: float = RELEASE_EVERY_S) -> Iterator[None]:
    """Let go of `path`'s mapped pages every `every_s` seconds while the block runs, and
    once more at its end."""
    done = threading.Event()

    def release_until_done() -> None:
        while not done.wait(every_s):
            release_mapped_pages(path)

    releaser = threading.Thread(target=release_until_done, name="release-pages", daemon=True)
    releaser.start()
    try:
        yield
    finally:
        done.set()
        releaser.join()
        release_mapped_pages(path)
