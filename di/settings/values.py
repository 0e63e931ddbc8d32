"""What a setting's value may be: parsers from the text of an environment variable to a
typed value. Each raises ValueError on a value it does not accept; the section that uses
it says what it accepts, in words, for the message."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from facestream.byte_sizes import UNITS

MIB = UNITS["MiB"]
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_SIZE = re.compile(r"^(\d+)\s*(B|KiB|MiB|GiB)?$")
_SIZE_UNITS = {None: 1, **UNITS}
N = TypeVar("N", int, float)
T = TypeVar("T")


class Parser:
    """A setting's parser and what it accepts, in words, made from the same bounds: the
    configuration page and the error messages say what the parser checks."""

    def __init__(self, parse: Callable[[str], Any], accepts: str) -> None:
        self.parse = parse
        self.accepts = accepts

    def __call__(self, raw: str) -> Any:
        return self.parse(raw)


def accepting(words: str) -> Callable[[Callable[[str], T]], Parser]:
    """A parser function with what it accepts, in words."""
    return lambda parse: Parser(parse, words)


def in_range(convert: Callable[[str], N], low: N, high: N) -> Callable[[str], N]:
    """`convert`, then refuse values outside [low, high]."""

    def parse(raw: str) -> N:
        value = convert(raw)
        if not low <= value <= high:  # type: ignore[operator]
            raise ValueError
        return value

    return parse


def integer(low: int, high: int) -> Parser:
    return Parser(in_range(int, low, high), f"an integer from {low} to {high}")


def _number_words(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


def number(low: float, high: float) -> Parser:
    words = f"a number from {_number_words(low)} to {_number_words(high)}"
    return Parser(in_range(float, low, high), words)


def seconds(low: float, high: float) -> Parser:
    words = f"seconds, a number from {_number_words(low)} to {_number_words(high)}"
    return Parser(in_range(float, low, high), words)


def integer_or_zero(low: int, high: int, zero: str) -> Parser:
    """0 (meaning `zero`: "off", "never"...) or an integer in [low, high]."""
    within = integer(low, high)
    return Parser(
        lambda raw: 0 if raw.strip() == "0" else within(raw),
        f"0 ({zero}) or an integer from {low} to {high}",
    )


def byte_count(raw: str) -> int:
    """A size in bytes, or with a KiB/MiB/GiB suffix."""
    match = _SIZE.match(raw.strip())
    if not match:
        raise ValueError
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


def size_words(count: int) -> str:
    """A whole byte count as a setting would be written: 64MiB, 1TiB."""
    for unit, scale in (("TiB", 1024 * UNITS["GiB"]), ("GiB", UNITS["GiB"]), ("MiB", MIB)):
        if count % scale == 0:
            return f"{count // scale}{unit}"
    return f"{count // 1024}KiB" if count % 1024 == 0 else str(count)


def size(low: int, high: int) -> Parser:
    return Parser(
        in_range(byte_count, low, high),
        f"a size from {size_words(low)} to {size_words(high)}, in bytes or with a "
        "KiB/MiB/GiB suffix",
    )


def choice(allowed: tuple[str, ...]) -> Parser:
    def parse(raw: str) -> str:
        value = raw.strip()
        if value not in allowed:
            raise ValueError
        return value

    named = [a for a in allowed if a]
    words = f"one of {', '.join(named)}" + (", or empty" if "" in allowed else "")
    return Parser(parse, words)


def subset(allowed: tuple[str, ...]) -> Parser:
    """A comma-separated subset of `allowed`, each at most once, in the order given."""

    def parse(raw: str) -> tuple[str, ...]:
        chosen = tuple(part.strip() for part in raw.split(","))
        if any(a not in allowed for a in chosen) or len(set(chosen)) != len(chosen):
            raise ValueError
        return chosen

    return Parser(parse, f"a comma-separated subset of {', '.join(allowed)}, each at most once")


@accepting("a Kafka topic name (letters, digits, '.', '_', '-'; up to 249)")
def topic(raw: str) -> str:
    if not _TOPIC_NAME.match(raw) or raw in (".", ".."):
        raise ValueError
    return raw


@accepting("host:port[,host:port...] or empty")
def bootstrap(raw: str) -> str:
    servers = [part.strip() for part in raw.split(",")] if raw.strip() else []
    if any(not re.match(r"^[^\s:/]+:\d{1,5}$", server) for server in servers):
        raise ValueError
    return ",".join(servers)


@accepting("host:port")
def address(raw: str) -> str:
    match = re.match(r"^(\[[0-9a-fA-F:]+\]|[^\s:/\[\]]+):(\d{1,5})$", raw.strip())
    if not match or not 0 <= int(match.group(2)) <= 65535:
        raise ValueError
    return raw.strip()


@accepting("a host name or IP address")
def host(raw: str) -> str:
    if not re.match(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9._-]+)$", raw.strip()):
        raise ValueError
    return raw.strip().strip("[]")


@accepting("comma-separated bearer tokens without spaces, or empty")
def tokens(raw: str) -> tuple[str, ...]:
    """Comma-separated bearer tokens, none empty or with a space."""
    found = tuple(part.strip() for part in raw.split(",")) if raw.strip() else ()
    if any(not t or re.search(r"\s", t) for t in found):
        raise ValueError
    return found


@accepting("a bearer token without spaces, or empty")
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


@accepting("a directory path")
def directory(raw: str) -> Path:
    """A directory, or a path where one can be made (not an existing file)."""
    path = Path(raw.strip()).expanduser()
    if not raw.strip() or (path.exists() and not path.is_dir()):
        raise ValueError
    return path


@accepting(f"one of {', '.join(LOG_LEVELS)}")
def log_level(raw: str) -> str:
    return choice(LOG_LEVELS)(raw.strip().upper())
