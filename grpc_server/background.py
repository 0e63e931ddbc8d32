"""The server's background threads (the Kafka producer's and the results listener's)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable


def run_or_report(
    serve: Callable[[], None], on_fatal: Callable[[str], None], logger: logging.Logger
) -> None:
    """Run a client thread's loop; if it dies of an unexpected error, log it and report it
    (health turns NOT_SERVING and the server exits non-zero) rather than die silently."""
    try:
        serve()
    except BaseException as error:
        logger.exception("%s died", threading.current_thread().name)
        on_fatal(f"{threading.current_thread().name} died: {type(error).__name__}")
