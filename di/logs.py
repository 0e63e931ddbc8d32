"""facestream's log: one logger per process, on stderr, as text or as JSON lines
(FACESTREAM_LOG_FORMAT).

Events about one request carry it and the stage they happened in, as `extra` fields:
`logger.error("...", extra={"request_id": rid, "stage": "decode"})`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from datetime import UTC, datetime

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d/%(threadName)s] %(message)s"
_HOST = socket.gethostname()
HANDLER_NAME = "facestream-stderr"


# What every LogRecord has: anything else on a record came from the call's `extra`.
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonLineFormatter(logging.Formatter):
    """One JSON object per event: time, level, logger, message, worker (host:pid/thread),
    every field the call gave in `extra` (request_id, stage, ...; a value JSON cannot hold
    as its text); exceptions as `error`."""

    def format(self, record: logging.LogRecord) -> str:
        event = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "worker": f"{_HOST}:{record.process or os.getpid()}/{record.threadName}",
        }
        for field, value in vars(record).items():
            if field not in _RECORD_FIELDS and field not in event:
                event[field] = value if _json_value(value) else str(value)
        if record.exc_info:
            event["error"] = self.formatException(record.exc_info)
        return json.dumps(event, ensure_ascii=False)


def _json_value(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def make_logger(level: str, log_format: str = "text") -> logging.Logger:
    """facestream's logger, writing to stderr at `level`, as text or JSON lines."""
    logger = logging.getLogger("facestream")
    handler = stderr_handler(logger)
    if handler is None:
        handler = logging.StreamHandler()
        handler.name = HANDLER_NAME
        logger.addHandler(handler)
        logger.propagate = False
    handler.setFormatter(
        JsonLineFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    logger.setLevel(level)
    return logger


def stderr_handler(logger: logging.Logger) -> logging.StreamHandler | None:
    """The handler make_logger gave the logger, if it has one."""
    return next((h for h in logger.handlers if h.name == HANDLER_NAME), None)  # type: ignore[return-value]
