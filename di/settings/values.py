"""What a setting's value may be. Bounds are in the types (pydantic `Field(ge=, le=)`,
`Literal`), and `bounded_words` says them in words for the configuration page and the
error messages. Formats (a topic name, a host:port, a file) are parsers from the text of
an environment variable, each with what it accepts in words; each raises ValueError on a
value it does not accept."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

from annotated_types import Ge, Le
from pydantic import AfterValidator, BeforeValidator, Field

from facestream.byte_sizes import UNITS

MIB = UNITS["MiB"]
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_SIZE = re.compile(r"^(\d+)\s*(B|KiB|MiB|GiB|TiB)?$")
_SIZE_UNITS = {None: 1, **UNITS, "TiB": 1024 * UNITS["GiB"]}
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


# Markers read by `bounded_words`: what a bounded number is, beyond its type.
SECONDS = "seconds"
STRIPPED = BeforeValidator(str.strip)


@dataclass(frozen=True)
class ZeroMeans:
    """0 is allowed and means `meaning`; other values start at `low`."""

    meaning: str
    low: int


def byte_count(raw: str) -> int:
    """A size in bytes, or with a KiB/MiB/GiB/TiB suffix (binary units only: "10MB" is
    ambiguous, so it is refused)."""
    match = _SIZE.match(str(raw).strip())
    if not match:
        raise ValueError
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


BYTES = BeforeValidator(byte_count)


def zero_or(low: int, high: int, meaning: str) -> Any:
    """The type of a setting that is 0 (`meaning`: "off", "never"...) or from low to high."""

    def refuse_below_low(value: int) -> int:
        if 0 < value < low:
            raise ValueError
        return value

    return Annotated[
        int, Field(ge=0, le=high), ZeroMeans(meaning, low), AfterValidator(refuse_below_low)
    ]


def _number_words(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


def size_words(count: int) -> str:
    """A whole byte count as a setting would be written: 64MiB, 1TiB."""
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        if count % _SIZE_UNITS[unit] == 0:
            return f"{count // _SIZE_UNITS[unit]}{unit}"
    return str(count)


def bounded_words(annotation: Any, metadata: list[Any]) -> str | None:
    """What a setting whose bounds are in its type accepts, in words, from the same bounds
    pydantic checks: a Literal's values, or a number's Ge/Le (None: its type has none)."""
    if get_origin(annotation) is Literal:
        allowed = get_args(annotation)
        named = ", ".join(str(a) for a in allowed if a)
        return f"one of {named}" + (", or empty" if "" in allowed else "")
    low = next((m.ge for m in metadata if isinstance(m, Ge)), None)
    high = next((m.le for m in metadata if isinstance(m, Le)), None)
    if low is None or high is None:
        return None
    zero = next((m for m in metadata if isinstance(m, ZeroMeans)), None)
    if zero:
        return f"0 ({zero.meaning}) or an integer from {zero.low} to {high}"
    if BYTES in metadata:
        return (
            f"a size from {size_words(low)} to {size_words(high)}, in bytes or with a "
            "KiB/MiB/GiB/TiB suffix"
        )
    if annotation is int:
        return f"an integer from {low} to {high}"
    unit = "seconds, " if SECONDS in metadata else ""
    return f"{unit}a number from {_number_words(low)} to {_number_words(high)}"


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
    if raw.strip().upper() not in LOG_LEVELS:
        raise ValueError
    return raw.strip().upper()
