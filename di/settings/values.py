"""What a setting's value may be: parsers from the text of an environment variable to a
typed value. Each raises ValueError on a value it does not accept; the section that uses
it says what it accepts, in words, for the message."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from facestream.byte_sizes import UNITS

MIB = UNITS["MiB"]
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_SIZE = re.compile(r"^(\d+)\s*(B|KiB|MiB|GiB)?$")
_SIZE_UNITS = {None: 1, **UNITS}
N = TypeVar("N", int, float)


def in_range(convert: Callable[[str], N], low: N, high: N) -> Callable[[str], N]:
    """`convert`, then refuse values outside [low, high]."""

    def parse(raw: str) -> N:
        value = convert(raw)
        if not low <= value <= high:  # type: ignore[operator]
            raise ValueError
        return value

    return parse


def integer(low: int, high: int) -> Callable[[str], int]:
    return in_range(int, low, high)


def seconds(low: float, high: float) -> Callable[[str], float]:
    return in_range(float, low, high)


def integer_or_zero(low: int, high: int) -> Callable[[str], int]:
    """0 (meaning "off" or "never") or an integer in [low, high]."""
    within = integer(low, high)
    return lambda raw: 0 if raw.strip() == "0" else within(raw)


def byte_count(raw: str) -> int:
    """A size in bytes, or with a KiB/MiB/GiB suffix."""
    match = _SIZE.match(raw.strip())
    if not match:
        raise ValueError
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


def size(low: int, high: int) -> Callable[[str], int]:
    return in_range(byte_count, low, high)


def choice(allowed: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        if value not in allowed:
            raise ValueError
        return value

    return parse


def subset(allowed: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    """A comma-separated subset of `allowed`, each at most once, in the order given."""

    def parse(raw: str) -> tuple[str, ...]:
        chosen = tuple(part.strip() for part in raw.split(","))
        if any(a not in allowed for a in chosen) or len(set(chosen)) != len(chosen):
            raise ValueError
        return chosen

    return parse


def topic(raw: str) -> str:
    if not _TOPIC_NAME.match(raw) or raw in (".", ".."):
        raise ValueError
    return raw


def bootstrap(raw: str) -> str:
    servers = [part.strip() for part in raw.split(",")] if raw.strip() else []
    if any(not re.match(r"^[^\s:/]+:\d{1,5}$", server) for server in servers):
        raise ValueError
    return ",".join(servers)


def address(raw: str) -> str:
    match = re.match(r"^(\[[0-9a-fA-F:]+\]|[^\s:/\[\]]+):(\d{1,5})$", raw.strip())
    if not match or not 0 <= int(match.group(2)) <= 65535:
        raise ValueError
    return raw.strip()


def host(raw: str) -> str:
    if not re.match(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9._-]+)$", raw.strip()):
        raise ValueError
    return raw.strip().strip("[]")


def tokens(raw: str) -> tuple[str, ...]:
    """Comma-separated bearer tokens, none empty or with a space."""
    found = tuple(part.strip() for part in raw.split(",")) if raw.strip() else ()
    if any(not t or re.search(r"\s", t) for t in found):
        raise ValueError
    return found


def one_token(raw: str) -> str:
    if re.search(r"\s", raw.strip()) or "," in raw:
        raise ValueError
    return raw.strip()


def optional_file(raw: str) -> Path | None:
    if not raw.strip():
        return None
    path = Path(raw.strip()).expanduser()
    if not path.is_file():
        raise ValueError
    return path


def directory(raw: str) -> Path:
    """A directory, or a path where one can be made (not an existing file)."""
    path = Path(raw.strip()).expanduser()
    if not raw.strip() or (path.exists() and not path.is_dir()):
        raise ValueError
    return path


def log_level(raw: str) -> str:
    return choice(LOG_LEVELS)(raw.strip().upper())
