"""`facestream up`: the whole local system (the embedded broker unless
FACESTREAM_KAFKA_BOOTSTRAP names a Kafka, the dataflow and the gRPC server) in the
foreground, until Ctrl-C or SIGTERM, for a user who sends images or video from other
terminals. The demo's start-up, without the demo."""

from __future__ import annotations

import sys
import time
import uuid

from apps.demo import choose_weights
from apps.local_system import LocalSystemError, ready_system, say, stop_on_signals
from di import Settings

# How often the children are looked at while the system runs.
CHECK_SECONDS = 0.5


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
            while True:
                system.check()
                time.sleep(CHECK_SECONDS)
    except KeyboardInterrupt:
        say("stopped: every child process was stopped")
        return 0
    except LocalSystemError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
