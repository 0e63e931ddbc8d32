"""`facestream up`: the whole local system (the embedded broker unless
FACESTREAM_KAFKA_BOOTSTRAP names a Kafka, the dataflow and the gRPC server) in the
foreground, until Ctrl-C or SIGTERM, for a user who sends images or video from other
terminals. The demo's start-up, without the demo."""

from __future__ import annotations

import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from apps.demo import choose_weights
from apps.local_system import LocalSystemError, ready_system, say, stop_on_signals
from di import Settings
from di.settings import EMBEDDED_BROKER_WARN_AT as WARN_AT
from facestream.byte_sizes import size_text

# How often the children are looked at while the system runs.
CHECK_SECONDS = 0.5
# How often the embedded broker's use is read from the server's metrics.
BUDGET_SECONDS = 5.0
# The embedded broker's use is said as it passes each of these shares of its budget.
BUDGET_STEPS = (0.25, 0.5, 0.75, WARN_AT, 1.0)


@dataclass(frozen=True)
class BrokerUse:
    """The embedded broker's use, as the gRPC server counts it."""

    held: float
    budget: float
    refusals: float  # requests refused with broker.full


def broker_use(metrics_url: str) -> BrokerUse | None:
    """The embedded broker's use, from the gRPC server's metrics; None when the server has
    no budget (a real Kafka) or does not answer."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    values = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    held = values.get("facestream_embedded_broker_bytes")
    budget = values.get("facestream_embedded_broker_budget_bytes")
    if held is None or not budget:
        return None
    return BrokerUse(held, budget, values.get("facestream_embedded_broker_refusals_total", 0))


class BudgetReport:
    """Says the embedded broker's use as it passes each step of its budget: at WARN_AT a
    warning, once full (a request refused) what is refused and what to do."""

    def __init__(self, metrics_url: str | None, interval: float = BUDGET_SECONDS) -> None:
        self._url = metrics_url
        self._interval = interval
        self._passed = 0  # steps said so far
        self._next_read = 0.0

    def check(self) -> None:
        now = time.monotonic()
        if self._url is None or now < self._next_read:
            return
        self._next_read = now + self._interval
        use = broker_use(self._url)
        if use is None:
            return
        # Full once a request was refused: what is left is too little for one more.
        share = 1.0 if use.refusals else use.held / use.budget
        passed = [step for step in BUDGET_STEPS if share >= step]
        if len(passed) > self._passed:
            self._passed = len(passed)
            say(budget_line(passed[-1], use.held, use.budget))  # the last step passed


def budget_line(step: float, held: float, budget: float) -> str:
    """The line `facestream up` prints when the embedded broker's use passes `step`."""
    use = f"the embedded broker holds {size_text(held)} of its {size_text(budget)} budget"
    if step >= 1.0:
        return (
            f"broker: FULL: {use}; new images and frames are refused (broker.full), those "
            "accepted are still answered. Restart facestream up to start afresh, or use a "
            "real Kafka (FACESTREAM_KAFKA_BOOTSTRAP) for a stream that never stops."
        )
    if step >= WARN_AT:
        return (
            f"broker: WARNING: {use} ({100 * held / budget:.0f}%, "
            "FACESTREAM_EMBEDDED_BROKER_BUDGET); past it new images and frames are refused."
        )
    return f"broker: {use} ({100 * held / budget:.0f}%)"


def run_up(settings: Settings, download: bool) -> int:
    """Start everything, say where it listens, and keep it running; exit code 0 when
    stopped by Ctrl-C or SIGTERM, 1 when a child died or did not start."""
    stop_on_signals()
    try:
        home, _synthetic = choose_weights(settings, download)
        with ready_system(settings, home, f"up-{uuid.uuid4().hex[:8]}") as (system, _client):
            say(
                f"facestream is up. From another terminal: FACESTREAM_GRPC_ADDRESS="
                f"{system.address} facestream submit IMAGE, or facestream video SOURCE. "
                "Ctrl-C to stop."
            )
            budget = BudgetReport(system.metrics_urls.get("grpc-server"))
            while True:
                system.check()
                budget.check()
                time.sleep(CHECK_SECONDS)
    except KeyboardInterrupt:
        say("stopped: every child process was stopped")
        return 0
    except LocalSystemError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
