"""Durable attempt counts, so that a record which crashes its process cannot do so forever.

A record that kills the dataflow process (a segfault in a native decoder, an OOM kill)
is read again after every restart: recovery resumes from the snapshot taken before it.
Before the heavy steps, `begin` counts the attempt in a small file that survives the
process; `finish` removes it once the record's steps returned. A count still there when
the record comes back means that many attempts died on it, and after `max_attempts` the
record is quarantined instead of tried again.

Crashes are attributed to every record in progress at the time, so a folder shared by
the processes of a cluster (the recovery volume) counts the same record wherever it runs.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


class AttemptLog:
    """Attempts per record key in `folder`: one file per record in progress or quarantined."""

    def __init__(self, folder: Path, max_attempts: int) -> None:
        self.folder = folder
        self.max_attempts = max_attempts
        folder.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        # Keys hold request ids chosen by clients: hashed, they cannot name another path.
        return self.folder / f"{hashlib.sha256(key.encode()).hexdigest()[:40]}.attempts"

    def begin(self, key: str) -> int:
        """Count an attempt at `key`, on disk before returning; return how many earlier
        attempts began and never finished (crashes)."""
        path = self._path(key)
        try:
            earlier = int(path.read_text())
        except (FileNotFoundError, ValueError):
            earlier = 0
        partial = path.with_suffix(".partial")
        with partial.open("w") as file:
            file.write(str(earlier + 1))
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)
        return earlier

    def is_poison(self, earlier_attempts: int) -> bool:
        """Whether a record with this many crashed attempts is to be skipped."""
        return earlier_attempts >= self.max_attempts

    def finish(self, key: str) -> None:
        """The attempt at `key` ended without a crash: forget it."""
        self._path(key).unlink(missing_ok=True)
