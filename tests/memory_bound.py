"""The suite's memory, held to a bound, so that `make test` passes beside a running system.

The pytest process's own peak is the kernel's (VmHWM, resident memory of every kind); with
its child processes (model workers, dataflows, servers, brokers) their resident anonymous
memory (RssAnon: what the OOM killer counts; pages of mapped files, such as the weights and
the engine cache, the kernel can drop and several processes share) is summed every
SAMPLE_SECONDS. The test during which either first passes its bound fails, naming the
figure; the run's peaks are printed at its end.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from apps.processes import memory_mb

PYTEST_BOUND_MB = 6 * 1024
WITH_CHILDREN_BOUND_MB = 10 * 1024
SAMPLE_SECONDS = 0.2
# The tests named in the summary with their peaks: where the bound's margin is spent.
HEAVIEST_SHOWN = 5


def own_peak_mb() -> float:
    """This process's peak resident memory (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


class MemorySampler:
    """Samples this process's and its descendants' resident anonymous memory on a thread of
    its own; keeps the largest sum and the test running when it was seen."""

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self.peak_during = ""
        self.test = "(collection)"
        self.per_test: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="memory-sampler", daemon=True)
        self._thread.start()

    def total_mb(self) -> float:
        me = psutil.Process()
        total = memory_mb(me.pid, "RssAnon")
        for child in me.children(recursive=True):
            try:
                total += memory_mb(child.pid, "RssAnon")
            except (OSError, ValueError):  # it ended between the listing and the reading
                continue
        return total

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            now = self.total_mb()
            self.per_test[self.test] = max(now, self.per_test.get(self.test, 0.0))
            if now > self.peak_mb:
                self.peak_mb, self.peak_during = now, self.test

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


_sampler: MemorySampler | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _sampler
    _sampler = MemorySampler()


# Each test's figures when its setup began, before any of its fixtures: a module's fixture
# (a dataflow it starts, say) counts against the first test that asks for it.
BEFORE = pytest.StashKey[tuple[float, float]]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    assert _sampler is not None
    _sampler.test = item.nodeid
    item.stash[BEFORE] = (own_peak_mb(), _sampler.peak_mb)


@pytest.fixture(autouse=True)
def within_memory_bound(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test during which (its fixtures' setup included) the pytest process, or it
    with its children, first passes its bound."""
    assert _sampler is not None
    own_before, total_before = request.node.stash[BEFORE]
    yield
    total_now = max(_sampler.peak_mb, _sampler.total_mb())
    own_now = own_peak_mb()
    if own_now > PYTEST_BOUND_MB >= own_before:
        pytest.fail(
            f"the pytest process reached {own_now:.0f} MB during this test, above its bound "
            f"of {PYTEST_BOUND_MB} MB: load models in the module's model worker "
            "(tests/model_process.py)"
        )
    if total_now > WITH_CHILDREN_BOUND_MB >= total_before:
        pytest.fail(
            f"pytest and its child processes reached {total_now:.0f} MB during this test, "
            f"above their bound of {WITH_CHILDREN_BOUND_MB} MB"
        )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _sampler is None:
        return
    _sampler.stop()
    own = own_peak_mb()
    terminalreporter.write_line(
        f"memory: pytest process peak {own / 1024:.1f} GB (bound {PYTEST_BOUND_MB / 1024:.0f} "
        f"GB); with its child processes {_sampler.peak_mb / 1024:.1f} GB anonymous (bound "
        f"{WITH_CHILDREN_BOUND_MB / 1024:.0f} GB), during {_sampler.peak_during}"
    )
    heaviest = sorted(_sampler.per_test.items(), key=lambda item: -item[1])[:HEAVIEST_SHOWN]
    for test, peak in heaviest:
        terminalreporter.write_line(f"  {peak / 1024:4.1f} GB  {test}")
