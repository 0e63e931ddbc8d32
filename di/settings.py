"""facestream's settings: one typed, immutable pydantic-settings model, read once from the
environment.

Each setting is declared once, below: its type, its variable (FACESTREAM_ and its name in
upper case, or the `env` it names), its default as written in the environment, what it
accepts and what it does. Secrets are SecretStr: never in a repr, a log or an error
message. The README's configuration table is generated from these declarations
(`python -m di.settings`) and a test keeps the two equal. Nothing else in facestream reads
environment variables.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from facestream.engines import ENGINES, PRECISIONS
from facestream.kafka_config import SASL_MECHANISMS, SECURITY_PROTOCOLS, KafkaSecurity, TopicSpec
from facestream.models import ACTIONS, DETECTOR_BACKENDS, weights_dir_of

ENV_PREFIX = "FACESTREAM_"
MIB = 1024 * 1024
# Room for the protobuf envelope around the image bytes in one Kafka record.
KAFKA_RECORD_HEADROOM_BYTES = 1 * MIB
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_SIZE = re.compile(r"^(\d+)\s*(B|KiB|MiB|GiB)?$")
_SIZE_UNITS = {None: 1, "B": 1, "KiB": 1024, "MiB": MIB, "GiB": 1024 * MIB}
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")
MODES = ("exact", "fast")
# FACESTREAM_DETECTION_MAX_SIDE=auto per mode: fast mode detects large images smaller.
AUTO_DETECTION_MAX_SIDE = {"exact": 2048, "fast": 1024}
N = TypeVar("N", int, float)


class SettingsError(ValueError):
    """One or more environment variables hold values facestream cannot use."""


def setting(default: str, accepts: str, help: str, *, env: str | None = None) -> Any:
    """One setting: its default as it would be written in the environment (parsed like any
    value), what it accepts and what it does, for messages and the README's table. `env`
    names its variable when it is not FACESTREAM_ and the field's name in upper case."""
    return Field(
        default,
        description=help,
        validate_default=True,
        validation_alias=env,
        json_schema_extra={"accepts": accepts},
    )


def _in_range(convert: Callable[[str], N], low: N, high: N) -> Callable[[str], N]:
    def parse(raw: str) -> N:
        value = convert(raw)
        if not low <= value <= high:  # type: ignore[operator]
            raise ValueError
        return value

    return parse


def _integer(low: int, high: int) -> Callable[[str], int]:
    return _in_range(int, low, high)


def _seconds(low: float, high: float) -> Callable[[str], float]:
    return _in_range(float, low, high)


def _integer_or_zero(low: int, high: int) -> Callable[[str], int]:
    in_range = _integer(low, high)
    return lambda raw: 0 if raw.strip() == "0" else in_range(raw)


def _auto_or(parse: Callable[[str], int]) -> Callable[[str], int | None]:
    # None: "auto", resolved from other settings in Settings.from_env.
    return lambda raw: None if raw.strip() == "auto" else parse(raw)


def _bytes(raw: str) -> int:
    match = _SIZE.match(raw.strip())
    if not match:
        raise ValueError
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


def _size(low: int, high: int) -> Callable[[str], int]:
    return _in_range(_bytes, low, high)


def _choice(allowed: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        if value not in allowed:
            raise ValueError
        return value

    return parse


def _actions(raw: str) -> tuple[str, ...]:
    chosen = tuple(part.strip() for part in raw.split(","))
    if not chosen or any(a not in ACTIONS for a in chosen) or len(set(chosen)) != len(chosen):
        raise ValueError
    return chosen


def _topic(raw: str) -> str:
    if not _TOPIC_NAME.match(raw) or raw in (".", ".."):
        raise ValueError
    return raw


def _bootstrap(raw: str) -> str:
    servers = [part.strip() for part in raw.split(",")] if raw.strip() else []
    if any(not re.match(r"^[^\s:/]+:\d{1,5}$", server) for server in servers):
        raise ValueError
    return ",".join(servers)


def _address(raw: str) -> str:
    match = re.match(r"^(\[[0-9a-fA-F:]+\]|[^\s:/\[\]]+):(\d{1,5})$", raw.strip())
    if not match or not 0 <= int(match.group(2)) <= 65535:
        raise ValueError
    return raw.strip()


def _host(raw: str) -> str:
    if not re.match(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9._-]+)$", raw.strip()):
        raise ValueError
    return raw.strip().strip("[]")


def _tokens(raw: str) -> tuple[str, ...]:
    tokens = tuple(part.strip() for part in raw.split(",")) if raw.strip() else ()
    if any(not t or re.search(r"\s", t) for t in tokens):
        raise ValueError
    return tokens


def _client_token(raw: str) -> str:
    if re.search(r"\s", raw.strip()) or "," in raw:
        raise ValueError
    return raw.strip()


def _optional_file(raw: str) -> Path | None:
    if not raw.strip():
        return None
    path = Path(raw.strip()).expanduser()
    if not path.is_file():
        raise ValueError
    return path


def _directory(raw: str) -> Path:
    path = Path(raw.strip()).expanduser()
    if not raw.strip() or (path.exists() and not path.is_dir()):
        raise ValueError
    return path


def _log_level(raw: str) -> str:
    return _choice(_LOG_LEVELS)(raw.strip().upper())


class Settings(BaseSettings):
    """Validated configuration of one facestream process. Build it with `Settings.from_env`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    kafka_bootstrap: Annotated[str, NoDecode, BeforeValidator(_bootstrap)] = setting(
        "",
        "host:port[,host:port...] or empty",
        "Kafka bootstrap servers. Empty: use the embedded broker on 127.0.0.1.",
    )
    kafka_security_protocol: Annotated[
        str, NoDecode, BeforeValidator(_choice(SECURITY_PROTOCOLS))
    ] = setting(
        "PLAINTEXT",
        f"one of {', '.join(SECURITY_PROTOCOLS)}",
        "How every facestream client connects to Kafka (producers, consumers, topic creation).",
    )
    kafka_sasl_mechanism: Annotated[
        str, NoDecode, BeforeValidator(_choice(("", *SASL_MECHANISMS)))
    ] = setting(
        "",
        f"one of {', '.join(SASL_MECHANISMS)}, or empty",
        "SASL mechanism, with a SASL_* protocol.",
    )
    kafka_sasl_username: Annotated[str, NoDecode, BeforeValidator(str.strip)] = setting(
        "",
        "a user name, or empty",
        "SASL user name, with a SASL_* protocol.",
    )
    kafka_sasl_password: Annotated[SecretStr, NoDecode, BeforeValidator(str)] = setting(
        "",
        "a password, or empty",
        "SASL password, with a SASL_* protocol. Never printed or logged.",
    )
    kafka_ssl_ca: Annotated[Path | None, NoDecode, BeforeValidator(_optional_file)] = setting(
        "",
        "the path of an existing PEM file, or empty",
        "CA (PEM) that signed Kafka's certificates, with SSL or SASL_SSL (else the system's).",
    )
    topic_replication_factor: Annotated[int, NoDecode, BeforeValidator(_integer(1, 32))] = setting(
        "1",
        "an integer from 1 to 32",
        "Replicas of each topic facestream creates; 1 for the embedded broker, 3 on a "
        "production Kafka (acks=all means little with one copy).",
    )
    topic_min_insync_replicas: Annotated[int, NoDecode, BeforeValidator(_integer(1, 32))] = setting(
        "1",
        "an integer from 1 to 32, at most the replication factor",
        "Replicas that must have a record before Kafka acknowledges it (min.insync.replicas "
        "of the topics facestream creates); 2 with 3 replicas.",
    )
    embedded_broker_port: Annotated[int, NoDecode, BeforeValidator(_integer(1, 65535))] = setting(
        "19092",
        "an integer from 1 to 65535",
        "Port of the embedded broker (used only when FACESTREAM_KAFKA_BOOTSTRAP is empty).",
    )
    topic_requests: Annotated[str, NoDecode, BeforeValidator(_topic)] = setting(
        "faces.requests",
        "a Kafka topic name (letters, digits, '.', '_', '-'; up to 249)",
        "Topic of submitted images (ImageSubmitted records).",
    )
    topic_results: Annotated[str, NoDecode, BeforeValidator(_topic)] = setting(
        "faces.results",
        "a Kafka topic name (letters, digits, '.', '_', '-'; up to 249)",
        "Topic of results, one AnalysisResult per image.",
    )
    topic_dead_letter: Annotated[str, NoDecode, BeforeValidator(_topic)] = setting(
        "faces.dead-letter",
        "a Kafka topic name (letters, digits, '.', '_', '-'; up to 249)",
        "Topic of records that could not be parsed, with the reason in headers.",
    )
    partitions: Annotated[int, NoDecode, BeforeValidator(_integer(1, 1024))] = setting(
        "4",
        "an integer from 1 to 1024",
        "Partitions of each topic facestream creates; keep >= total dataflow workers.",
    )
    max_image_bytes: Annotated[int, NoDecode, BeforeValidator(_size(1024, 512 * MIB))] = setting(
        "10MiB",
        "a size from 1KiB to 512MiB, in bytes or with a KiB/MiB/GiB suffix",
        "Largest accepted image, in bytes. Kafka limits are raised to fit it.",
    )
    max_pixels: Annotated[int, NoDecode, BeforeValidator(_integer(1, 1_000_000_000))] = setting(
        "40000000",
        "an integer from 1 to 1000000000",
        "Largest accepted image in pixels (width x height), against decompression bombs.",
    )
    actions: Annotated[tuple[str, ...], NoDecode, BeforeValidator(_actions)] = setting(
        "age,gender,emotion,race",
        f"a comma-separated subset of {', '.join(ACTIONS)}, each at most once",
        "Attributes analysed when a request does not name its own.",
    )
    detector_backend: Annotated[
        str, NoDecode, BeforeValidator(_choice(tuple(DETECTOR_BACKENDS)))
    ] = setting(
        "opencv",
        f"one of {', '.join(DETECTOR_BACKENDS)}",
        "DeepFace face detector used when a request does not name its own.",
    )
    mode: Annotated[str, NoDecode, BeforeValidator(_choice(MODES))] = setting(
        "exact",
        "exact or fast",
        "exact: the results of DeepFace.analyze. fast: detection without DeepFace's "
        "full-image border, bf16 where the CPU has it; its agreement with exact is in the "
        "README (Performance).",
    )
    engine: Annotated[str, NoDecode, BeforeValidator(_choice(ENGINES))] = setting(
        "openvino",
        f"one of {', '.join(ENGINES)}",
        "What runs the attribute models: OpenVINO (converted from the loaded Keras models; "
        "fastest, DeepFace's results in fp32) or TensorFlow (DeepFace's own path).",
    )
    precision: Annotated[str, NoDecode, BeforeValidator(_choice(("auto", *PRECISIONS)))] = setting(
        "auto",
        f"auto or one of {', '.join(PRECISIONS)}",
        "auto: fp32 in exact mode, bf16 in fast mode where the CPU has it. bf16 needs "
        "FACESTREAM_ENGINE=openvino and a CPU with bf16 (AVX-512 BF16 or AMX): refused at "
        "start-up otherwise.",
    )
    engine_cache_dir: Annotated[Path, NoDecode, BeforeValidator(_directory)] = setting(
        "~/.cache/facestream/engines",
        "a directory path",
        "Where OpenVINO conversions are kept, keyed by the weights' hashes and the "
        "OpenVINO version, so that a restart skips them.",
    )
    batch_size: Annotated[int, NoDecode, BeforeValidator(_integer(1, 256))] = setting(
        "8",
        "an integer from 1 to 256",
        "Faces per model call in the dataflow's batched analysis.",
    )
    detection_max_side: Annotated[
        int | None, NoDecode, BeforeValidator(_auto_or(_integer_or_zero(64, 65535)))
    ] = setting(
        "auto",
        "auto (2048 in exact mode, 1024 in fast mode), 0 (never downscale) or an integer "
        "from 64 to 65535",
        "Images with a longer side are downscaled for face detection only; faces are "
        "still cropped from the full image. 0 keeps DeepFace's results on every image.",
    )
    max_attempts: Annotated[int, NoDecode, BeforeValidator(_integer(1, 100))] = setting(
        "3",
        "an integer from 1 to 100",
        "Crashes of the dataflow on one record before it is quarantined (FAILED with "
        "request.poison, record to the dead-letter topic).",
    )
    attempts_dir: Annotated[Path, NoDecode, BeforeValidator(_directory)] = setting(
        "~/.cache/facestream/attempts",
        "a directory path",
        "Where the dataflow counts attempts per record, durably; share it between the "
        "processes of a cluster (e.g. the recovery volume).",
    )
    failpoint_crash_on: Annotated[str, NoDecode, BeforeValidator(str.strip)] = setting(
        "",
        "a request id prefix, or empty (off)",
        "Testing only: the dataflow process crashes (SIGSEGV) on requests whose id starts "
        "with this. Off when empty.",
    )
    grpc_address: Annotated[str, NoDecode, BeforeValidator(_address)] = setting(
        "127.0.0.1:50051",
        "host:port",
        "Address the gRPC server binds to, and clients connect to.",
    )
    max_in_flight: Annotated[int, NoDecode, BeforeValidator(_integer(1, 1_000_000))] = setting(
        "1024",
        "an integer from 1 to 1000000",
        "Publishes a gRPC server waits on at once; beyond it calls get RESOURCE_EXHAUSTED.",
    )
    max_concurrent_rpcs: Annotated[int, NoDecode, BeforeValidator(_integer(1, 1_000_000))] = (
        setting(
            "1000",
            "an integer from 1 to 1000000",
            "Calls a gRPC server runs at once (streams included); beyond it calls get "
            "RESOURCE_EXHAUSTED.",
        )
    )
    max_held_image_bytes: Annotated[
        int, NoDecode, BeforeValidator(_size(1024, 64 * 1024 * MIB))
    ] = setting(
        "256MiB",
        "a size from 1KiB to 64GiB, in bytes or with a KiB/MiB/GiB suffix",
        "Image bytes a gRPC server holds for calls in progress (an Analyze keeps its image "
        "until its result); beyond it calls get RESOURCE_EXHAUSTED.",
    )
    max_watchers: Annotated[int, NoDecode, BeforeValidator(_integer(1, 100_000))] = setting(
        "256",
        "an integer from 1 to 100000",
        "WatchResults streams a gRPC server serves at once; beyond it they get RESOURCE_EXHAUSTED.",
    )
    ack_timeout: Annotated[float, NoDecode, BeforeValidator(_seconds(0.1, 300))] = setting(
        "10",
        "seconds, a number from 0.1 to 300",
        "Longest wait for Kafka to acknowledge a record; then the call fails with UNAVAILABLE.",
    )
    result_timeout: Annotated[float, NoDecode, BeforeValidator(_seconds(1, 86400))] = setting(
        "300",
        "seconds, a number from 1 to 86400",
        "Longest wait of Analyze for its result when the client sets no shorter deadline.",
    )
    auth_tokens: Annotated[tuple[SecretStr, ...], NoDecode, BeforeValidator(_tokens)] = setting(
        "",
        "comma-separated bearer tokens without spaces, or empty",
        "When set, gRPC calls need the metadata 'authorization: Bearer TOKEN' with one of these.",
    )
    auth_file: Annotated[Path | None, NoDecode, BeforeValidator(_optional_file)] = setting(
        "",
        "the path of an existing TOML file, or empty",
        "Principals, their scopes and token hashes or certificate names (README, Security); "
        "re-read when it changes or on SIGHUP.",
    )
    max_in_flight_per_principal: Annotated[
        int, NoDecode, BeforeValidator(_integer(1, 1_000_000))
    ] = setting(
        "256",
        "an integer from 1 to 1000000",
        "Publishes one principal may have waiting on Kafka at once; beyond it its calls get "
        "RESOURCE_EXHAUSTED.",
    )
    max_calls_per_principal: Annotated[int, NoDecode, BeforeValidator(_integer(1, 1_000_000))] = (
        setting(
            "250",
            "an integer from 1 to 1000000",
            "AnalyzeService calls one principal may run at once (streams included); beyond it "
            "its calls get RESOURCE_EXHAUSTED. Applies when authentication is on.",
        )
    )
    max_watchers_per_principal: Annotated[int, NoDecode, BeforeValidator(_integer(1, 100_000))] = (
        setting(
            "64",
            "an integer from 1 to 100000",
            "WatchResults streams one principal may hold open at once; beyond it its watches get "
            "RESOURCE_EXHAUSTED. Applies when authentication is on.",
        )
    )
    max_held_image_bytes_per_principal: Annotated[
        int, NoDecode, BeforeValidator(_size(1024, 64 * 1024 * MIB))
    ] = setting(
        "64MiB",
        "a size from 1KiB to 64GiB, in bytes or with a KiB/MiB/GiB suffix",
        "Image bytes the server holds for one principal's calls in progress; beyond it its "
        "calls get RESOURCE_EXHAUSTED. Applies when authentication is on.",
    )
    tls_cert: Annotated[Path | None, NoDecode, BeforeValidator(_optional_file)] = setting(
        "",
        "the path of an existing PEM file, or empty",
        "Certificate chain (PEM): the server's, set with FACESTREAM_TLS_KEY to serve TLS; "
        "for the `facestream` client, its own client certificate.",
    )
    tls_key: Annotated[Path | None, NoDecode, BeforeValidator(_optional_file)] = setting(
        "",
        "the path of an existing PEM file, or empty",
        "Private key (PEM) of FACESTREAM_TLS_CERT.",
    )
    tls_client_ca: Annotated[Path | None, NoDecode, BeforeValidator(_optional_file)] = setting(
        "",
        "the path of an existing PEM file, or empty",
        "CA (PEM) whose client certificates the server requires (mTLS); the certificate's CN "
        "or SAN names a principal of FACESTREAM_AUTH_FILE.",
    )
    client_token: Annotated[SecretStr, NoDecode, BeforeValidator(_client_token)] = setting(
        "",
        "a bearer token without spaces, or empty",
        "Token the `facestream submit/watch` client sends (when the server wants one).",
    )
    tls_ca: Annotated[Path | None, NoDecode, BeforeValidator(_optional_file)] = setting(
        "",
        "the path of an existing PEM file, or empty",
        "CA certificate (PEM) the client trusts; set it to connect over TLS.",
    )
    log_level: Annotated[str, NoDecode, BeforeValidator(_log_level)] = setting(
        "INFO",
        f"one of {', '.join(_LOG_LEVELS)}",
        "Level of facestream's log.",
    )
    log_format: Annotated[str, NoDecode, BeforeValidator(_choice(LOG_FORMATS))] = setting(
        "text",
        f"one of {', '.join(LOG_FORMATS)}",
        "text: one readable line per event; json: one JSON object per line (time, level, "
        "message, worker, and request_id and stage where the event has them).",
    )
    metrics_host: Annotated[str, NoDecode, BeforeValidator(_host)] = setting(
        "127.0.0.1",
        "a host name or IP address",
        "Address the Prometheus /metrics endpoints of this process bind to.",
    )
    metrics_port: Annotated[int, NoDecode, BeforeValidator(_integer_or_zero(1, 65535))] = setting(
        "9464",
        "a port 1-65535, or 0 (no endpoint)",
        "Port of the gRPC server's Prometheus /metrics endpoint.",
    )
    dataflow_metrics_port: Annotated[int, NoDecode, BeforeValidator(_integer_or_zero(1, 65535))] = (
        setting(
            "9465",
            "a port 1-65535, or 0 (no endpoint)",
            "Port of a dataflow process's Prometheus /metrics endpoint (one per process: give "
            "each process on one host its own).",
        )
    )
    deepface_home: Annotated[Path, NoDecode, BeforeValidator(_directory)] = setting(
        "~",
        "a directory path",
        "DeepFace's own variable: weights live in $DEEPFACE_HOME/.deepface/weights.",
        env="DEEPFACE_HOME",
    )

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
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read and validate every variable of `environ`; raise SettingsError listing all
        the bad ones (a secret's value is never shown)."""
        values = _EnvironmentSource(cls, environ)()
        try:
            return cls(**values)
        except ValidationError as error:
            problems = [_problem(cls, detail) for detail in error.errors()]
            raise SettingsError(
                "Invalid facestream settings:\n  " + "\n  ".join(problems)
            ) from None

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        """Checks across settings, once each one is valid on its own."""
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError(
                "FACESTREAM_TLS_CERT and FACESTREAM_TLS_KEY must be set together "
                "(both for TLS, neither for plaintext)."
            )
        if self.kafka_security_protocol.startswith("SASL") and not (
            self.kafka_sasl_mechanism
            and self.kafka_sasl_username
            and self.kafka_sasl_password.get_secret_value()
        ):
            raise ValueError(
                f"FACESTREAM_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                "FACESTREAM_KAFKA_SASL_MECHANISM, FACESTREAM_KAFKA_SASL_USERNAME and "
                "FACESTREAM_KAFKA_SASL_PASSWORD."
            )
        if self.topic_min_insync_replicas > self.topic_replication_factor:
            raise ValueError(
                "FACESTREAM_TOPIC_MIN_INSYNC_REPLICAS must not exceed "
                "FACESTREAM_TOPIC_REPLICATION_FACTOR: no write could be acknowledged."
            )
        if self.engine == "tensorflow" and self.precision == "bf16":
            raise ValueError(
                "FACESTREAM_PRECISION=bf16 needs FACESTREAM_ENGINE=openvino: the TensorFlow "
                "engine computes in fp32 only."
            )
        if self.tls_client_ca and self.tls_cert is None:
            raise ValueError(
                "FACESTREAM_TLS_CLIENT_CA needs FACESTREAM_TLS_CERT and FACESTREAM_TLS_KEY: "
                "client certificates are checked over TLS."
            )
        topics = [self.topic_requests, self.topic_results, self.topic_dead_letter]
        if len(set(topics)) != len(topics):
            raise ValueError(
                "FACESTREAM_TOPIC_REQUESTS, FACESTREAM_TOPIC_RESULTS and "
                f"FACESTREAM_TOPIC_DEAD_LETTER must differ, got {', '.join(topics)}."
            )
        if self.detection_max_side is None:  # auto: by mode
            object.__setattr__(self, "detection_max_side", AUTO_DETECTION_MAX_SIDE[self.mode])
        return self

    @property
    def uses_embedded_broker(self) -> bool:
        """True when no Kafka is configured and facestream runs its own broker."""
        return not self.kafka_bootstrap

    @property
    def bootstrap_servers(self) -> str:
        """Where Kafka clients connect: the configured Kafka or the embedded broker."""
        return self.kafka_bootstrap or f"127.0.0.1:{self.embedded_broker_port}"

    @property
    def kafka_security(self) -> KafkaSecurity:
        """How clients connect to Kafka: plaintext to the embedded broker, as configured
        otherwise."""
        if self.uses_embedded_broker:
            return KafkaSecurity()
        return KafkaSecurity(
            self.kafka_security_protocol,
            self.kafka_sasl_mechanism,
            self.kafka_sasl_username,
            self.kafka_sasl_password.get_secret_value(),
            self.kafka_ssl_ca,
        )

    @property
    def kafka_max_message_bytes(self) -> int:
        """Record size limit for producers, topics and consumers: one image plus envelope."""
        return self.max_image_bytes + KAFKA_RECORD_HEADROOM_BYTES

    @property
    def topics(self) -> list[TopicSpec]:
        """The three facestream topics, sized for the largest image."""
        return [
            TopicSpec(
                name,
                self.partitions,
                self.kafka_max_message_bytes,
                self.topic_replication_factor,
                self.topic_min_insync_replicas,
            )
            for name in (self.topic_requests, self.topic_results, self.topic_dead_letter)
        ]

    @property
    def weights_dir(self) -> Path:
        """Where DeepFace looks for (and downloads) model weights."""
        return weights_dir_of(self.deepface_home)


class _EnvironmentSource(EnvSettingsSource):
    """pydantic-settings' own environment source, over a mapping given to it (the
    process's environment, or a test's) instead of reading the process's own."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = dict(environ)
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {name.lower(): value for name, value in self._environ.items()}


def environment_variable(name: str, field: FieldInfo) -> str:
    """The variable a settings field is read from."""
    alias = field.validation_alias
    return alias if isinstance(alias, str) else f"{ENV_PREFIX}{name.upper()}"


def is_secret(field: FieldInfo) -> bool:
    """A secret's value is never printed: not in a repr, not in an error message."""
    return "SecretStr" in str(field.annotation)


def _problem(settings_cls: type[Settings], detail: Any) -> str:
    """One line of SettingsError: the variable, its value (unless a secret) and what it
    accepts; or a check across settings, as it said."""
    if not detail["loc"]:
        return str(detail["msg"]).removeprefix("Value error, ")
    key = str(detail["loc"][0])
    for name, field in settings_cls.model_fields.items():
        variable = environment_variable(name, field)
        if key in (name, variable):
            shown = "(value hidden: a secret)" if is_secret(field) else f"={detail['input']!r}"
            accepts = (field.json_schema_extra or {})["accepts"]  # type: ignore[index]
            return f"{variable}{shown} is not valid: expected {accepts}."
    return f"{key}: {detail['msg']}"


ENVIRONMENT_VARIABLES = tuple(
    environment_variable(name, field) for name, field in Settings.model_fields.items()
)


def configuration_table() -> str:
    """The README's configuration table, made from the declarations above."""
    rows = ["| variable | default | accepts | what it does |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = f"`{field.default}`" if field.default else "*(empty)*"
        accepts = (field.json_schema_extra or {})["accepts"]  # type: ignore[index]
        rows.append(
            f"| `{environment_variable(name, field)}` | {default} | {accepts} | "
            f"{field.description} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":  # python -m di.settings: the table, to paste into the README
    print(configuration_table())
