"""The start-up kit of the demo, the benchmarks and the tests: child processes that never
outlive their parent and are stopped by their pid, their output, and waiting on a
condition with a bounded timeout."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# A child is tied to its parent by programs it runs through, not by Python code between
# fork and exec (Popen's preexec_fn): a preexec_fn makes Python fork() the whole process,
# and in a parent with live gRPC channels gRPC's fork handlers then restart its poller
# thread in the child, whose epoll descriptor Popen closes before exec: the child could
# abort (SIGABRT, "Epoll1Poller ... epoll_wait error: Bad file descriptor", grpc/grpc#43055)
# before it ever ran. Without a preexec_fn Popen uses vfork(), which runs no fork handlers.
# - setpriv --pdeathsig TERM: if the Python parent dies (even by SIGKILL), the kernel sends
#   SIGTERM to the child, so no orphan keeps a port or GBs of models.
# - env --default-signal=INT: a parent started in the background by a shell ignores
#   SIGINT, and children inherit that; the child must still stop when asked with SIGINT
#   (Bytewax's way).
_SETPRIV = shutil.which("setpriv")
_ENV = shutil.which("env")
TIED_TO_PARENT: tuple[str, ...] = (
    *((_SETPRIV, "--pdeathsig", "TERM", "--") if _SETPRIV else ()),
    *((_ENV, "--default-signal=INT") if _ENV else ()),
)


def as_user(user: pwd.struct_passwd | None) -> tuple[str, ...]:
    """The program that runs a command as `user` (this process being root); none for None."""
    if user is None:
        return ()
    return ("setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups")


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


class ChildExitedError(RuntimeError):
    """A child ended before doing what was waited for; the message has its output."""


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
    parent at the latest. Without `env` it inherits this process's environment. With
    `separate_errors`, stderr goes to a log of its own (`errors()`). With `user`, it runs as
    that system user (this process being root)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        separate_errors: bool = False,
        user: pwd.struct_passwd | None = None,
    ) -> None:
        self.name = name
        self.argv = tuple(argv)  # as given: without the programs that tie it to its parent
        self._log = tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log")  # noqa: SIM115
        self._errors = (
            tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".err")  # noqa: SIM115
            if separate_errors
            else None
        )
        # The user first: a change of credentials clears the parent-death signal.
        self.process = subprocess.Popen(
            [*as_user(user), *TIED_TO_PARENT, *argv],
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._errors if self._errors is not None else subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        """Everything the child wrote so far (stderr too, unless kept apart)."""
        return Path(self._log.name).read_text(errors="replace")

    def errors(self) -> str:
        """What the child wrote to stderr so far, when it is kept apart."""
        return Path(self._errors.name).read_text(errors="replace") if self._errors else ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def wait_for_output(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first match of `pattern` (a line, re.MULTILINE) in the output, once it is
        written. WaitTimeoutError after `timeout` s, ChildExitedError when the child ends
        without writing it; both with the output."""
        found: list[re.Match[str]] = []

        def written() -> bool:
            running = self.running()  # before reading: a last line is not missed
            match = re.search(pattern, self.output(), re.MULTILINE)
            if match:
                found.append(match)
            elif not running:
                raise ChildExitedError(
                    f"{self.name} ended (code {self.process.returncode}) without a line "
                    f"matching {pattern!r}; its output:\n{self.output()}"
                )
            return bool(match)

        try:
            wait_until(written, timeout, f"{self.name} to print {pattern!r}")
        except WaitTimeoutError as error:
            raise WaitTimeoutError(f"{error}; its output:\n{self.output()}") from None
        return found[0]

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Send `signum`, wait up to `timeout` s, then SIGKILL; return the exit code."""
        if self.running():
            os.kill(self.pid, signum)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        return int(self.process.returncode)


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
