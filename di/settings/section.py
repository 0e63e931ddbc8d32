"""How settings are declared, read and composed.

A `Section` is a small typed, immutable pydantic-settings model of related settings (Kafka,
the server, ...). Each field is one environment variable, declared with `setting`: its
default as written in the environment, what it accepts and what it does. Bounds are in
the field's type (`Field(ge=, le=)`, `Literal`), and said in words from the same values. A process's
settings (`ProcessSettings`) are the sections it uses; `from_env` reads and validates them
from a mapping (the process's environment, or a test's), reporting every bad variable at
once. Secrets are `SecretStr` values: never in a repr, a log or an error message.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from di.settings.values import bounded_words

ENV_PREFIX = "FACESTREAM_"


class SettingsError(ValueError):
    """One or more environment variables hold values facestream cannot use."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("Invalid facestream settings:\n  " + "\n  ".join(problems))


def setting(default: str, help: str, *, accepts: str | None = None, env: str | None = None) -> Any:
    """One setting: its default as it would be written in the environment (parsed like any
    value) and what it does. What it accepts, in words, comes from its parser
    (`di.settings.values`), unless `accepts` says more than the parser knows. `env` names
    its variable when it is not FACESTREAM_ and the field's name in upper case."""
    return Field(
        default,
        description=help,
        validate_default=True,
        json_schema_extra={"accepts": accepts, "env": env},
    )


def environment_variable(name: str, field: FieldInfo) -> str:
    """The variable a settings field is read from."""
    return (field.json_schema_extra or {}).get("env") or f"{ENV_PREFIX}{name.upper()}"  # type: ignore[union-attr,return-value]


def accepts(field: FieldInfo) -> str:
    """What a setting accepts, in words: as declared, or as its type's bounds or its parser
    say (`di.settings.values`)."""
    declared = (field.json_schema_extra or {}).get("accepts")  # type: ignore[union-attr]
    said = said_by_type(field)
    if declared or said:
        return str(declared or said)
    raise TypeError("a setting whose type or parser does not say what it accepts needs accepts=")


def said_by_type(field: FieldInfo) -> str | None:
    """What a setting's type says it accepts: its bounds, or its parser's words."""
    bounded = bounded_words(field.annotation, field.metadata)
    words = [getattr(m.func, "accepts", None) for m in field.metadata if hasattr(m, "func")]
    return bounded or next((w for w in words if w), None)


def is_secret(field: FieldInfo) -> bool:
    """A field whose type holds a SecretStr (a token, a tuple of tokens, a password)."""
    return _holds_secret(field.annotation)


def _holds_secret(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, SecretStr):
        return True
    return any(_holds_secret(argument) for argument in get_args(annotation))


class Section(BaseSettings):
    """Settings that belong together; the docstring of each says which processes use it."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid")
    # Each section's heading in the configuration page (docs/configuration.md).
    title: ClassVar[str] = ""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only what from_env hands over: the environment it was given, nothing else.
        return (init_settings,)

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Field name -> its environment variable."""
        return {name: environment_variable(name, f) for name, f in cls.model_fields.items()}

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Self:
        """This section from `environ` (names matched without regard to case); SettingsError
        listing every bad variable (a secret's value is never shown)."""
        given = {name.upper(): value for name, value in environ.items()}
        values = {name: given[v] for name, v in cls.variables().items() if v in given}
        try:
            return cls(**values)
        except ValidationError as error:
            raise SettingsError([_problem(cls, detail) for detail in error.errors()]) from None


def _problem(section: type[Section], detail: Any) -> str:
    """One line of SettingsError: the variable, its value (unless a secret) and what it
    accepts; or a check across settings, as it said."""
    if not detail["loc"]:
        return str(detail["msg"]).removeprefix("Value error, ")
    name = str(detail["loc"][0])
    field = section.model_fields[name]
    shown = "(value hidden: a secret)" if is_secret(field) else f"={detail['input']!r}"
    return f"{environment_variable(name, field)}{shown} is not valid: expected {accepts(field)}."


class ProcessSettings(BaseModel):
    """The settings of one kind of process: one field per section it uses."""

    model_config = ConfigDict(frozen=True)

    @classmethod
    def section_types(cls) -> dict[str, type[Section]]:
        return {name: field.annotation for name, field in cls.model_fields.items()}  # type: ignore[misc]

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Self:
        """Every section from `environ`; SettingsError listing the bad variables of all."""
        built: dict[str, Section] = {}
        problems: list[str] = []
        for name, section in cls.section_types().items():
            try:
                built[name] = section.from_env(environ)
            except SettingsError as error:
                problems += error.problems
        if problems:
            raise SettingsError(problems)
        return cls(**built)

    def sections(self) -> Iterator[Section]:
        for name in type(self).model_fields:
            yield getattr(self, name)
