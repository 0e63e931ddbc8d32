"""FACESTREAM_LOG_FORMAT: text lines, or one JSON object per line with the request and
stage an event is about; and a dataflow step's failure logged that way."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest

from dataflow.items import ImageJob
from dataflow.steps import extract_faces
from di import Settings
from di.logs import TEXT_FORMAT, JsonLineFormatter, make_logger, stderr_handler
from facestream.models import ACTIONS
from facestream.requests import RequestLimits
from tests.images import astronaut_jpeg


@pytest.fixture
def log_to_buffer():
    """log_to_buffer(format) -> (facestream's logger in that format, the buffer it writes
    to); the process-wide logger gets its stream and format back after the test."""
    saved = []

    def start(log_format: str) -> tuple[logging.Logger, io.StringIO]:
        logger = logging.getLogger("facestream")
        handler = stderr_handler(logger)
        if handler is not None and not saved:
            saved.append((handler, handler.stream, handler.formatter))
        configured = make_logger("INFO", log_format)
        stream = io.StringIO()
        stderr_handler(configured).setStream(stream)
        return configured, stream

    yield start
    handler = stderr_handler(logging.getLogger("facestream"))
    stream, formatter = saved[0][1:] if saved else (sys.stderr, logging.Formatter(TEXT_FORMAT))
    handler.setStream(stream)
    handler.setFormatter(formatter)


def test_json_lines_carry_request_stage_worker_and_the_exception(log_to_buffer):
    logger, stream = log_to_buffer("json")
    try:
        raise ValueError("bad pixels")
    except ValueError:
        logger.exception(
            "decoding failed for request %s", "r-1", extra={"request_id": "r-1", "stage": "decode"}
        )
    logger.info("plain event")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "decoding failed for request r-1"
    assert (first["level"], first["request_id"], first["stage"]) == ("ERROR", "r-1", "decode")
    assert "ValueError: bad pixels" in first["error"]
    assert first["worker"].count(":") == 1 and "/" in first["worker"]
    assert first["time"].endswith("+00:00")
    assert "request_id" not in second and second["message"] == "plain event"


def test_json_lines_keep_every_extra_field(log_to_buffer):
    logger, stream = log_to_buffer("json")
    logger.warning(
        "a batch was slow",
        extra={"faces": 8, "seconds": 1.5, "principal": "team-a", "shape": (8, 224, 224)},
    )
    (event,) = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (event["faces"], event["seconds"], event["principal"]) == (8, 1.5, "team-a")
    assert event["shape"] == "(8, 224, 224)"  # what JSON cannot hold, as its text
    assert not {"args", "msg", "levelno", "pathname", "exc_info"} & event.keys()


def test_text_is_the_default_and_one_line_per_event(log_to_buffer):
    logger, stream = log_to_buffer(Settings.from_env({}).observability.log_format)
    logger.warning("hello %s", "there", extra={"request_id": "r-2"})
    (line,) = stream.getvalue().splitlines()
    assert " WARNING facestream [" in line and line.endswith("] hello there")
    assert not line.startswith("{")


def test_a_step_failure_is_logged_with_its_request_and_stage(log_to_buffer):
    logger, stream = log_to_buffer("json")
    limits = RequestLimits(10_000_000, 10**8, ACTIONS, "opencv", ("opencv",))

    class Exploding:  # the analyzer's detector raising, as a native library might
        actions = ACTIONS
        synthetic_weights = True

        def find_faces(self, *_args: object) -> list:
            raise RuntimeError("detector broke")

    job = ImageJob("r-3", "t/0/1", astronaut_jpeg(), (), "", None, 0.0, b"")
    [result] = extract_faces(job, Exploding(), limits, logger, detection_max_side=2048)  # type: ignore[arg-type]
    assert result.error.code == "detect.failed"
    (event,) = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (event["request_id"], event["stage"], event["level"]) == ("r-3", "detect", "ERROR")
    assert "RuntimeError: detector broke" in event["error"]


def test_the_formatter_is_json_for_any_record():
    record = logging.LogRecord("facestream", logging.INFO, __file__, 1, "%d%%", (5,), None)
    assert json.loads(JsonLineFormatter().format(record))["message"] == "5%"
