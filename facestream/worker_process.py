"""A Python function run in a child process of its own, and waiting on a condition with a
bounded timeout: for work whose memory must be returned when it is done (a model's
conversion), or whose crash must not take the caller with it."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class WaitTimeoutError(TimeoutError):
    """What was waited for did not happen in time; the message says what it was."""


def wait_until(
    condition: Callable[[], object], timeout: float, what: str, poll: float = 0.05
) -> float:
    """Poll `condition` until it is true; return the seconds it took. WaitTimeoutError
    naming `what` after `timeout` s. `condition` may raise to stop waiting early."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise WaitTimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)
    return time.monotonic() - started


def process_alive(pid: int) -> bool:
    """True while process `pid` runs (a zombie, dead but not reaped, counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _die_with_parent() -> None:
    # As TIED_TO_PARENT does for programs: if the parent dies, even by SIGKILL, the kernel
    # ends the worker too, so that no orphan keeps gigabytes of models. (The kernel ties it
    # to the thread that started it: WorkerProcess is made on a thread that outlives it.)
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class WorkerProcess:
    """A new Python process (spawned: nothing of this one's memory is shared) that runs the
    functions given to it, one at a time, and keeps what they load (modules, models) until it
    is closed. For work whose memory must be returned when it is done, or whose crash must not
    take the caller with it (a child that dies raises BrokenProcessPool in the caller).
    Functions and their arguments cross by pickle: module-level functions, plain data."""

    def __init__(self, name: str) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.name = name
        self._pool = ProcessPoolExecutor(
            1, mp_context=multiprocessing.get_context("spawn"), initializer=_die_with_parent
        )
        self.pid: int = self._pool.submit(os.getpid).result(timeout=120)

    def call(self, function: Callable[..., T], *args: object, timeout: float | None = None) -> T:
        """`function(*args)` in the worker; its result, or the exception it raised."""
        return self._pool.submit(function, *args).result(timeout)

    def close(self, timeout: float = 30) -> None:
        """Stop the worker by its pid: asked to finish first, killed if it does not in time."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        try:
            wait_until(lambda: not process_alive(self.pid), timeout, f"{self.name} to exit", 0.1)
        except WaitTimeoutError:
            os.kill(self.pid, signal.SIGKILL)
            wait_until(lambda: not process_alive(self.pid), 10, f"{self.name} killed", 0.1)

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
