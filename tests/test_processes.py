"""The start-up kit's children (apps/processes.py): started without forking this process,
so that no library's fork handler runs in a child before it execs, and stopped by SIGINT
even when their parent ignores it."""

from __future__ import annotations

import os
import signal
import sys

from apps.processes import ChildProcess, wait_until

FORKS_SEEN: list[int] = []
# Runs in this process just before any fork() that runs fork handlers (gRPC's are among
# them): the start-up kit must never trigger one.
os.register_at_fork(before=lambda: FORKS_SEEN.append(os.getpid()))


def test_a_child_starts_without_running_fork_handlers():
    before = len(FORKS_SEEN)
    child = ChildProcess("no-fork", [sys.executable, "-c", "print('started', flush=True)"])
    try:
        child.wait_for_output(r"^started$", timeout=60)
    finally:
        child.stop(signal.SIGKILL)
    assert len(FORKS_SEEN) == before


def test_a_child_stops_on_sigint_though_its_parent_ignores_it():
    code = "import time; print('ready', flush=True); time.sleep(120)"
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        child = ChildProcess("sigint", [sys.executable, "-c", code])
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        child.wait_for_output(r"^ready$", timeout=60)
        os.kill(child.pid, signal.SIGINT)
        wait_until(lambda: not child.running(), 30, "the child to stop on SIGINT")
    finally:
        child.stop(signal.SIGKILL)
