"""Who may call what: principals, their scopes, and the credentials that prove them.

The credentials file (FACESTREAM_AUTH_FILE, TOML) names each principal with its scopes and
how it proves who it is: the SHA-256 of its bearer token (the token itself is never
stored), and/or the names (CN or DNS SAN) of its client certificate (mTLS):

    [principals.team-a]
    token_sha256 = "3c4f...64 hex digits"   # facestream auth hash-token
    scopes = ["analyze:submit", "results:read"]

    [principals.dashboard]
    certificate_names = ["dashboard.internal"]
    scopes = ["results:watch-all"]

The file is read every RELOAD_CHECK_SECONDS and loaded again when its content changed (or
at once on SIGHUP), so a revoked token is refused without a restart, also by calls already
open (grpc_server/auth.py). A file that does not parse keeps the last good credentials and
is reported in the log; a file that is deleted or cannot be read fails closed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

SUBMIT = "analyze:submit"  # Submit, Analyze, SubmitStream
READ = "results:read"  # its own results: Analyze, WatchResults with ids, WatchStream
WATCH_ALL = "results:watch-all"  # WatchResults with no ids, and others' results by id
# Its own galleries: identify on any request, Verify against a subject, ListGalleries,
# ListSubjects.
GALLERY_READ = "gallery:read"
GALLERY_WRITE = "gallery:write"  # its own galleries: Enroll, Forget
ADMIN = "admin"  # every scope
SCOPES = (SUBMIT, READ, WATCH_ALL, GALLERY_READ, GALLERY_WRITE, ADMIN)
# How often the credentials file is read: a change is loaded within two checks.
RELOAD_CHECK_SECONDS = 0.25
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class CredentialsError(ValueError):
    """The credentials file cannot be used; the message says where and why."""


@dataclass(frozen=True)
class Principal:
    """A caller: its name (recorded with its requests) and what it may do."""

    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        """Whether the principal holds `scope`: admin holds every scope, and watching every
        result includes reading any one by id."""
        return (
            ADMIN in self.scopes
            or scope in self.scopes
            or (scope == READ and WATCH_ALL in self.scopes)
        )


# Every caller when authentication is off: one namespace, every scope.
ANONYMOUS = Principal("", frozenset({ADMIN}))


def hash_token(token: str) -> str:
    """The SHA-256 (hex) under which a bearer token is stored in the credentials file."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Credentials:
    """Principals by token hash and by certificate name."""

    by_token_hash: Mapping[str, Principal]
    by_certificate_name: Mapping[str, Principal]

    @classmethod
    def parse(cls, text: str, origin: str) -> Credentials:
        """Read the TOML text of a credentials file; CredentialsError says what is wrong."""
        try:
            document = CredentialsFile.model_validate(tomllib.loads(text))
        except tomllib.TOMLDecodeError as error:
            raise CredentialsError(f"{origin}: not valid TOML: {error}") from None
        except ValidationError as error:
            raise CredentialsError(f"{origin}: {_first_problem(error)}") from None
        by_token: dict[str, Principal] = {}
        by_certificate: dict[str, Principal] = {}
        for name, entry in document.principals.items():
            principal = Principal(name, frozenset(entry.scopes))
            for digest in entry.token_sha256:
                if digest in by_token:
                    raise CredentialsError(f"{origin}: two principals share a token")
                by_token[digest] = principal
            for certificate_name in entry.certificate_names:
                if certificate_name in by_certificate:
                    raise CredentialsError(
                        f"{origin}: certificate name {certificate_name!r} names two principals"
                    )
                by_certificate[certificate_name] = principal
        return cls(by_token, by_certificate)

    @classmethod
    def of_tokens(cls, tokens: Sequence[str]) -> Credentials:
        """FACESTREAM_AUTH_TOKENS: each token a principal `token-N` with every scope."""
        return cls(
            {
                hash_token(token): Principal(f"token-{index}", frozenset({ADMIN}))
                for index, token in enumerate(tokens, 1)
            },
            {},
        )

    def merged(self, other: Credentials) -> Credentials:
        return Credentials(
            {**self.by_token_hash, **other.by_token_hash},
            {**self.by_certificate_name, **other.by_certificate_name},
        )


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class PrincipalEntry(BaseModel):
    """One `[principals.NAME]` table of the credentials file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scopes: list[str]
    token_sha256: Annotated[list[str], BeforeValidator(_one_or_many)] = []
    certificate_names: Annotated[list[str], BeforeValidator(_one_or_many)] = []

    @field_validator("scopes", mode="before")
    @classmethod
    def _known_scopes(cls, scopes: Any) -> Any:
        if not isinstance(scopes, list) or not scopes or any(s not in SCOPES for s in scopes):
            raise ValueError(f"scopes must be a non-empty list of {', '.join(SCOPES)}")
        return scopes

    @field_validator("token_sha256")
    @classmethod
    def _hashes(cls, digests: list[str]) -> list[str]:
        if any(not _SHA256.match(digest) for digest in digests):
            raise ValueError(
                "token_sha256 must be 64 lowercase hex digits (the hash, never the token; "
                "`facestream auth hash-token` prints it)"
            )
        return digests

    @field_validator("certificate_names")
    @classmethod
    def _names(cls, names: list[str]) -> list[str]:
        if not all(names):
            raise ValueError("certificate_names must be a string or a list of strings")
        return names

    @model_validator(mode="after")
    def _proven(self) -> PrincipalEntry:
        if not self.token_sha256 and not self.certificate_names:
            raise ValueError("give token_sha256 and/or certificate_names")
        return self


PrincipalName = Annotated[str, StringConstraints(pattern=_NAME.pattern)]


class CredentialsFile(BaseModel):
    """The credentials file: its `[principals.NAME]` tables."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    principals: Annotated[dict[PrincipalName, PrincipalEntry], Field(min_length=1)]


def _first_problem(error: ValidationError) -> str:
    """The first thing wrong with a credentials file, said as its TOML reads."""
    detail = error.errors()[0]
    place = detail["loc"]
    if place[:1] == ("principals",) and len(place) == 1:
        return "no [principals.NAME] tables"
    where = f"principal {place[1]!r}" if len(place) > 1 else "the file"
    if detail["type"] == "string_pattern_mismatch" or (len(place) == 3 and place[2] == "[key]"):
        return f"{where}: use 1-128 letters, digits, '.', '_', ':', '@', '-'"
    if detail["type"] == "extra_forbidden":
        return f"{where}: unknown key {place[-1]}"
    if detail["type"] in ("model_type", "dict_type"):
        return f"{where}: expected a table"
    if detail["type"] in ("list_type", "string_type"):
        key = next(part for part in reversed(place) if isinstance(part, str))
        return f"{where}: {key} must be a string or a list of strings"
    return f"{where}: {str(detail['msg']).removeprefix('Value error, ')}"


class Authenticator:
    """Finds the principal of a call from its bearer token or its client certificate.

    With neither a credentials file nor tokens, authentication is off: every caller is
    ANONYMOUS. The file is judged by its content (a SHA-256 of its bytes), never its time or
    size: `check_file` reads it (the server calls it every RELOAD_CHECK_SECONDS) and loads a
    new content once two reads in a row agree, so a write caught half-way is not taken and
    a same-size edit is not missed. A file that is gone or cannot be read fails closed:
    nobody is known until a valid file is back. Use from one event loop (the server's).
    """

    def __init__(self, file: Path | None, tokens: Sequence[str], logger: logging.Logger) -> None:
        self.file = file
        self.enabled = file is not None or bool(tokens)
        self._tokens = Credentials.of_tokens(tokens)
        self._logger = logger
        self.credentials = self._tokens
        # SHA-256 of the file content last judged (loaded, or refused as invalid).
        self._digest: str | None = None
        # A new content seen once: loaded when the next read finds it unchanged.
        self._pending: str | None = None
        # Why every call is refused (the file is gone or unreadable), or None.
        self.refusing: str | None = None
        # Bumped whenever what a token or certificate proves may have changed; open calls
        # wait on `changed` to check themselves again.
        self.generation = 0
        self._changed = asyncio.Event()
        if file is not None:
            data = file.read_bytes()  # raises: fail at start
            self.credentials = self._tokens.merged(_parse(data, file))
            self._digest = _digest(data)

    def identify(
        self, metadata: Iterable[tuple[str, str | bytes]], certificate_names: Iterable[str] = ()
    ) -> Principal | None:
        """The caller's principal, or None when it proved nobody (or auth is off: ANONYMOUS)."""
        if not self.enabled:
            return ANONYMOUS
        if self.refusing is not None:
            return None
        credentials = self.credentials
        for name in certificate_names:
            if name in credentials.by_certificate_name:
                return credentials.by_certificate_name[name]
        for key, value in metadata:
            if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
                return credentials.by_token_hash.get(hash_token(value.removeprefix("Bearer ")))
        return None

    def reload(self) -> None:
        """Read the credentials file now and load it (SIGHUP): no wait for a second read."""
        data = self._read_file()
        if data is not None:
            self._pending = None
            self._load(data, _digest(data))

    def check_file(self) -> None:
        """Look at the file once: fail closed if it is gone, load a new content once it is
        stable (the same on two reads in a row)."""
        data = self._read_file()
        if data is None:
            return
        digest = _digest(data)
        if digest == self._digest:
            self._pending = None
        elif digest != self._pending:
            self._pending = digest  # maybe a write in progress: judge it on the next read
        else:
            self._pending = None
            self._load(data, digest)

    async def changed(self) -> None:
        """Return when the credentials change (loaded anew, or failed closed)."""
        await self._changed.wait()

    async def watch_file(self) -> None:
        """Check the file every RELOAD_CHECK_SECONDS until cancelled."""
        while True:
            self.check_file()
            await asyncio.sleep(RELOAD_CHECK_SECONDS)

    def _read_file(self) -> bytes | None:
        """The file's bytes; None without a file, or (failing closed) when it cannot be read."""
        if self.file is None:
            return None
        try:
            return self.file.read_bytes()
        except OSError as error:
            self._refuse_everyone(error)
            return None

    def _load(self, data: bytes, digest: str) -> None:
        assert self.file is not None
        self._digest = digest  # an invalid content is reported once, not every check
        try:
            credentials = self._tokens.merged(_parse(data, self.file))
        except CredentialsError as error:
            kept = "refusing every call" if self.refusing else "keeping the previous ones"
            self._logger.error("credentials not reloaded, %s: %s", kept, error)
            return
        self.credentials = credentials
        self.refusing = None
        self._bump()
        self._logger.info(
            "credentials reloaded from %s: %d principals", self.file, self._principal_count()
        )

    def _refuse_everyone(self, error: OSError) -> None:
        reason = f"cannot read the credentials file {self.file}: {error.strerror or error}"
        self._digest = self._pending = None  # the same content, once back, is loaded again
        if self.refusing != reason:
            self.refusing = reason
            self._bump()
            self._logger.error("%s; refusing every call but health until it is back", reason)

    def _bump(self) -> None:
        self.generation += 1
        self._changed.set()
        self._changed = asyncio.Event()

    def _principal_count(self) -> int:
        credentials = self.credentials
        names = {p.name for p in credentials.by_token_hash.values()}
        return len(names | {p.name for p in credentials.by_certificate_name.values()})


def _parse(data: bytes, file: Path) -> Credentials:
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise CredentialsError(f"{file}: not UTF-8 text") from None
    return Credentials.parse(text, str(file))


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
