"""Child processes that never outlive their parent and are stopped by their pid."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

# Resolved here, in the parent: the child of a threaded process must not load libraries.
_PRCTL = ctypes.CDLL(None).prctl if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1


def _prepare_child() -> None:
    """Run in a child between fork and exec (Popen's preexec_fn): ties it to its parent."""
    # If the Python parent dies (even by SIGKILL), the
    # kernel sends SIGTERM to the child, so no orphan keeps a port or GBs of models.
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)
    # A parent started in the background by a shell ignores SIGINT, and children inherit
    # that; the child must still stop when asked with SIGINT (Bytewax's way).
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def process_alive(pid: int) -> bool:
    """True while process `pid` runs (a zombie, dead but not reaped, counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def memory_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's memory from /proc in MB: resident now (VmRSS) or its peak (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no {field} for pid {pid}")


class ChildProcess:
    """A command run as a child in its own session (so a terminal's Ctrl-C reaches only the
    parent, which stops children in order), its output in a log file, ended with its
    parent at the latest. Without `env` it inherits this process's environment."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self._log = tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log")  # noqa: SIM115
        self.process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_prepare_child,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(Path(self._log.name).read_text(errors="replace").splitlines()[-lines:])

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Send `signum`, wait up to `timeout` s, then SIGKILL; return the exit code."""
        if self.running():
            os.kill(self.pid, signum)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        self._log.close()
        return int(self.process.returncode)
