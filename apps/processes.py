"""The start-up kit of the demo, the benchmarks and the tests: child processes that never
outlive their parent and are stopped by their pid, and their output. (Python functions in
a child process, and waiting on a condition: facestream/worker_process.py.)"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from facestream.worker_process import WaitTimeoutError, wait_until

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


class ChildExitedError(RuntimeError):
    """A child ended before doing what was waited for; the message has its output."""


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
