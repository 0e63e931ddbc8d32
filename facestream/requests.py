"""What a valid analysis request is: its id, actions and detector, checked the same way by
the gRPC front (before publishing) and the dataflow (for records written by others)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from facestream.errors import CodedError
from facestream.models import ACTIONS, DETECTOR_BACKENDS

REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


@dataclass(frozen=True)
class RequestLimits:
    """What a request may be and ask for, the same at the gRPC front and in the dataflow:
    image bytes and pixels, and the actions and detectors this deployment offers."""

    max_image_bytes: int
    max_pixels: int
    enabled_actions: tuple[str, ...]
    default_detector: str
    available_detectors: tuple[str, ...]


class InvalidRequestError(CodedError, ValueError):
    """A request option is not acceptable. `code` is stable, `message` is for a person."""


def new_request_id() -> str:
    """A fresh, unique request id."""
    return uuid.uuid4().hex


def check_request_id(request_id: str) -> str:
    """Return the id if it is 1-128 characters of letters, digits and . _ : - (first one
    a letter or digit); raise InvalidRequestError (request.bad_id) otherwise."""
    return _checked_id(request_id, "request id", "request.bad_id")


def check_stream_id(stream_id: str) -> str:
    """Return the stream id if it has a request id's form; raise InvalidRequestError
    (frame.bad_stream_id) otherwise."""
    return _checked_id(stream_id, "stream id", "frame.bad_stream_id")


def _checked_id(value: str, what: str, code: str) -> str:
    if not REQUEST_ID.match(value):
        raise InvalidRequestError(
            code,
            f"{what} {value[:140]!r} is not valid: use 1 to 128 letters, digits, "
            "'.', '_', ':' or '-', starting with a letter or digit.",
        )
    return value


def resolve_options(
    actions: Sequence[str], detector_backend: str, limits: RequestLimits
) -> tuple[tuple[str, ...], str]:
    """The actions and detector a request runs with: its own, or the defaults when empty.

    Raises InvalidRequestError for an unknown action or detector, an action this
    deployment has not loaded (FACESTREAM_ACTIONS), or a detector whose files are not
    installed (it would try to download them while every other image waits).
    """
    enabled_actions, available_detectors = limits.enabled_actions, limits.available_detectors
    chosen = tuple(dict.fromkeys(actions)) or enabled_actions
    unknown = [a for a in chosen if a not in ACTIONS]
    if unknown:
        raise InvalidRequestError(
            "request.unknown_action",
            f"unknown action(s) {', '.join(map(repr, unknown))}; use {', '.join(ACTIONS)}.",
        )
    disabled = [a for a in chosen if a not in enabled_actions]
    if disabled:
        raise InvalidRequestError(
            "request.action_disabled",
            f"action(s) {', '.join(disabled)} are not enabled here; enabled: "
            f"{', '.join(enabled_actions)} (FACESTREAM_ACTIONS).",
        )
    detector = detector_backend or limits.default_detector
    if detector not in DETECTOR_BACKENDS:
        raise InvalidRequestError(
            "request.unknown_detector",
            f"unknown detector backend {detector!r}; use {', '.join(DETECTOR_BACKENDS)}.",
        )
    if detector not in available_detectors:
        raise InvalidRequestError(
            "request.detector_unavailable",
            f"detector backend {detector!r} is not installed here (its files are missing); "
            f"available: {', '.join(available_detectors)}. An operator installs it with "
            f"`facestream models download --detectors {detector}`.",
        )
    return chosen, detector
