"""facestream's settings: one typed, immutable object read once from the environment.

Every variable is listed in `VARIABLES` with its default and what it accepts; the README's
configuration table is checked against that list. Nothing else in facestream reads
environment variables.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facestream.engines import ENGINES, PRECISIONS
from facestream.kafka_config import SASL_MECHANISMS, SECURITY_PROTOCOLS, KafkaSecurity, TopicSpec
from facestream.models import ACTIONS, DETECTOR_BACKENDS, weights_dir_of

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


class SettingsError(ValueError):
    """One or more environment variables hold values facestream cannot use."""


@dataclass(frozen=True)
class Variable:
    """An environment variable: the settings field it fills, its default, what it accepts."""

    name: str
    field: str
    default: str
    accepts: str
    parse: Callable[[str], Any]
    help: str
    secret: bool = False  # its value is never printed, not even when it is invalid


def _integer(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if not low <= value <= high:
            raise ValueError
        return value

    return parse


def _integer_or_zero(low: int, high: int) -> Callable[[str], int]:
    in_range = _integer(low, high)
    return lambda raw: 0 if raw.strip() == "0" else in_range(raw)


def _auto_or(parse: Callable[[str], int]) -> Callable[[str], int | None]:
    # None: "auto", resolved from other settings in Settings.from_env.
    return lambda raw: None if raw.strip() == "auto" else parse(raw)


def _size(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        match = _SIZE.match(raw.strip())
        if not match:
            raise ValueError
        value = int(match.group(1)) * _SIZE_UNITS[match.group(2)]
        if not low <= value <= high:
            raise ValueError
        return value

    return parse


def _seconds(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw)
        if not low <= value <= high:
            raise ValueError
        return value

    return parse


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


VARIABLES: tuple[Variable, ...] = (
    Variable(
        "FACESTREAM_KAFKA_BOOTSTRAP",
        "kafka_bootstrap",
        "",
        "host:port[,host:port...] or empty",
        _bootstrap,
        "Kafka bootstrap servers. Empty: use the embedded broker on 127.0.0.1.",
    ),
    Variable(
        "FACESTREAM_KAFKA_SECURITY_PROTOCOL",
        "kafka_security_protocol",
        "PLAINTEXT",
        f"one of {', '.join(SECURITY_PROTOCOLS)}",
        _choice(SECURITY_PROTOCOLS),
        "How every facestream client connects to Kafka (producers, consumers, topic creation).",
    ),
    Variable(
        "FACESTREAM_KAFKA_SASL_MECHANISM",
        "kafka_sasl_mechanism",
        "",
        f"one of {', '.join(SASL_MECHANISMS)}, or empty",
        _choice(("", *SASL_MECHANISMS)),
        "SASL mechanism, with a SASL_* protocol.",
    ),
    Variable(
        "FACESTREAM_KAFKA_SASL_USERNAME",
        "kafka_sasl_username",
        "",
        "a user name, or empty",
        str.strip,
        "SASL user name, with a SASL_* protocol.",
    ),
    Variable(
        "FACESTREAM_KAFKA_SASL_PASSWORD",
        "kafka_sasl_password",
        "",
        "a password, or empty",
        str,
        "SASL password, with a SASL_* protocol. Never printed or logged.",
        secret=True,
    ),
    Variable(
        "FACESTREAM_KAFKA_SSL_CA",
        "kafka_ssl_ca",
        "",
        "the path of an existing PEM file, or empty",
        _optional_file,
        "CA (PEM) that signed Kafka's certificates, with SSL or SASL_SSL (else the system's).",
    ),
    Variable(
        "FACESTREAM_TOPIC_REPLICATION_FACTOR",
        "topic_replication_factor",
        "1",
        "an integer from 1 to 32",
        _integer(1, 32),
        "Replicas of each topic facestream creates; 1 for the embedded broker, 3 on a "
        "production Kafka (acks=all means little with one copy).",
    ),
    Variable(
        "FACESTREAM_TOPIC_MIN_INSYNC_REPLICAS",
        "topic_min_insync_replicas",
        "1",
        "an integer from 1 to 32, at most the replication factor",
        _integer(1, 32),
        "Replicas that must have a record before Kafka acknowledges it (min.insync.replicas "
        "of the topics facestream creates); 2 with 3 replicas.",
    ),
    Variable(
        "FACESTREAM_EMBEDDED_BROKER_PORT",
        "embedded_broker_port",
        "19092",
        "an integer from 1 to 65535",
        _integer(1, 65535),
        "Port of the embedded broker (used only when FACESTREAM_KAFKA_BOOTSTRAP is empty).",
    ),
    Variable(
        "FACESTREAM_TOPIC_REQUESTS",
        "topic_requests",
        "faces.requests",
        "a Kafka topic name (letters, digits, '.', '_', '-'; up to 249)",
        _topic,
        "Topic of submitted images (ImageSubmitted records).",
    ),
    Variable(
        "FACESTREAM_TOPIC_RESULTS",
        "topic_results",
        "faces.results",
        "a Kafka topic name (letters, digits, '.', '_', '-'; up to 249)",
        _topic,
        "Topic of results, one AnalysisResult per image.",
    ),
    Variable(
        "FACESTREAM_TOPIC_DEAD_LETTER",
        "topic_dead_letter",
        "faces.dead-letter",
        "a Kafka topic name (letters, digits, '.', '_', '-'; up to 249)",
        _topic,
        "Topic of records that could not be parsed, with the reason in headers.",
    ),
    Variable(
        "FACESTREAM_PARTITIONS",
        "partitions",
        "4",
        "an integer from 1 to 1024",
        _integer(1, 1024),
        "Partitions of each topic facestream creates; keep >= total dataflow workers.",
    ),
    Variable(
        "FACESTREAM_MAX_IMAGE_BYTES",
        "max_image_bytes",
        "10MiB",
        "a size from 1KiB to 512MiB, in bytes or with a KiB/MiB/GiB suffix",
        _size(1024, 512 * MIB),
        "Largest accepted image, in bytes. Kafka limits are raised to fit it.",
    ),
    Variable(
        "FACESTREAM_MAX_PIXELS",
        "max_pixels",
        "40000000",
        "an integer from 1 to 1000000000",
        _integer(1, 1_000_000_000),
        "Largest accepted image in pixels (width x height), against decompression bombs.",
    ),
    Variable(
        "FACESTREAM_ACTIONS",
        "actions",
        "age,gender,emotion,race",
        f"a comma-separated subset of {', '.join(ACTIONS)}, each at most once",
        _actions,
        "Attributes analysed when a request does not name its own.",
    ),
    Variable(
        "FACESTREAM_DETECTOR_BACKEND",
        "detector_backend",
        "opencv",
        f"one of {', '.join(DETECTOR_BACKENDS)}",
        _choice(tuple(DETECTOR_BACKENDS)),
        "DeepFace face detector used when a request does not name its own.",
    ),
    Variable(
        "FACESTREAM_MODE",
        "mode",
        "exact",
        "exact or fast",
        _choice(MODES),
        "exact: the results of DeepFace.analyze. fast: detection without DeepFace's "
        "full-image border, bf16 where the CPU has it; its agreement with exact is in the "
        "README (Performance).",
    ),
    Variable(
        "FACESTREAM_ENGINE",
        "engine",
        "openvino",
        f"one of {', '.join(ENGINES)}",
        _choice(ENGINES),
        "What runs the attribute models: OpenVINO (converted from the loaded Keras models; "
        "fastest, DeepFace's results in fp32) or TensorFlow (DeepFace's own path).",
    ),
    Variable(
        "FACESTREAM_PRECISION",
        "precision",
        "auto",
        f"auto or one of {', '.join(PRECISIONS)}",
        _choice(("auto", *PRECISIONS)),
        "auto: fp32 in exact mode, bf16 in fast mode where the CPU has it. bf16 needs "
        "FACESTREAM_ENGINE=openvino and a CPU with bf16 (AVX-512 BF16 or AMX): refused at "
        "start-up otherwise.",
    ),
    Variable(
        "FACESTREAM_ENGINE_CACHE_DIR",
        "engine_cache_dir",
        "~/.cache/facestream/engines",
        "a directory path",
        _directory,
        "Where OpenVINO conversions are kept, keyed by the weights' hashes and the "
        "OpenVINO version, so that a restart skips them.",
    ),
    Variable(
        "FACESTREAM_BATCH_SIZE",
        "batch_size",
        # Per face on 2 cores, shared trunk: batch 1 0.38 s, 4 0.29 s, 8 0.29 s, 16 0.32 s.
        "8",
        "an integer from 1 to 256",
        _integer(1, 256),
        "Faces per model call in the dataflow's batched analysis.",
    ),
    Variable(
        "FACESTREAM_DETECTION_MAX_SIDE",
        "detection_max_side",
        "auto",
        "auto (2048 in exact mode, 1024 in fast mode), 0 (never downscale) or an integer "
        "from 64 to 65535",
        _auto_or(_integer_or_zero(64, 65535)),
        "Images with a longer side are downscaled for face detection only; faces are "
        "still cropped from the full image. 0 keeps DeepFace's results on every image.",
    ),
    Variable(
        "FACESTREAM_MAX_ATTEMPTS",
        "max_attempts",
        "3",
        "an integer from 1 to 100",
        _integer(1, 100),
        "Crashes of the dataflow on one record before it is quarantined (FAILED with "
        "request.poison, record to the dead-letter topic).",
    ),
    Variable(
        "FACESTREAM_ATTEMPTS_DIR",
        "attempts_dir",
        "~/.cache/facestream/attempts",
        "a directory path",
        _directory,
        "Where the dataflow counts attempts per record, durably; share it between the "
        "processes of a cluster (e.g. the recovery volume).",
    ),
    Variable(
        "FACESTREAM_FAILPOINT_CRASH_ON",
        "failpoint_crash_on",
        "",
        "a request id prefix, or empty (off)",
        str.strip,
        "Testing only: the dataflow process crashes (SIGSEGV) on requests whose id starts "
        "with this. Off when empty.",
    ),
    Variable(
        "FACESTREAM_GRPC_ADDRESS",
        "grpc_address",
        "127.0.0.1:50051",
        "host:port",
        _address,
        "Address the gRPC server binds to, and clients connect to.",
    ),
    Variable(
        "FACESTREAM_MAX_IN_FLIGHT",
        "max_in_flight",
        "1024",
        "an integer from 1 to 1000000",
        _integer(1, 1_000_000),
        "Publishes a gRPC server waits on at once; beyond it calls get RESOURCE_EXHAUSTED.",
    ),
    Variable(
        "FACESTREAM_MAX_CONCURRENT_RPCS",
        "max_concurrent_rpcs",
        "1000",
        "an integer from 1 to 1000000",
        _integer(1, 1_000_000),
        "Calls a gRPC server runs at once (streams included); beyond it calls get "
        "RESOURCE_EXHAUSTED.",
    ),
    Variable(
        "FACESTREAM_MAX_HELD_IMAGE_BYTES",
        "max_held_image_bytes",
        "256MiB",
        "a size from 1KiB to 64GiB, in bytes or with a KiB/MiB/GiB suffix",
        _size(1024, 64 * 1024 * MIB),
        "Image bytes a gRPC server holds for calls in progress (an Analyze keeps its image "
        "until its result); beyond it calls get RESOURCE_EXHAUSTED.",
    ),
    Variable(
        "FACESTREAM_MAX_WATCHERS",
        "max_watchers",
        "256",
        "an integer from 1 to 100000",
        _integer(1, 100_000),
        "WatchResults streams a gRPC server serves at once; beyond it they get RESOURCE_EXHAUSTED.",
    ),
    Variable(
        "FACESTREAM_ACK_TIMEOUT",
        "ack_timeout",
        "10",
        "seconds, a number from 0.1 to 300",
        _seconds(0.1, 300),
        "Longest wait for Kafka to acknowledge a record; then the call fails with UNAVAILABLE.",
    ),
    Variable(
        "FACESTREAM_RESULT_TIMEOUT",
        "result_timeout",
        "300",
        "seconds, a number from 1 to 86400",
        _seconds(1, 86400),
        "Longest wait of Analyze for its result when the client sets no shorter deadline.",
    ),
    Variable(
        "FACESTREAM_AUTH_TOKENS",
        "auth_tokens",
        "",
        "comma-separated bearer tokens without spaces, or empty",
        _tokens,
        "When set, gRPC calls need the metadata 'authorization: Bearer TOKEN' with one of these.",
        secret=True,
    ),
    Variable(
        "FACESTREAM_AUTH_FILE",
        "auth_file",
        "",
        "the path of an existing TOML file, or empty",
        _optional_file,
        "Principals, their scopes and token hashes or certificate names (README, Security); "
        "re-read when it changes or on SIGHUP.",
    ),
    Variable(
        "FACESTREAM_MAX_IN_FLIGHT_PER_PRINCIPAL",
        "max_in_flight_per_principal",
        "256",
        "an integer from 1 to 1000000",
        _integer(1, 1_000_000),
        "Publishes one principal may have waiting on Kafka at once; beyond it its calls get "
        "RESOURCE_EXHAUSTED.",
    ),
    Variable(
        "FACESTREAM_TLS_CERT",
        "tls_cert",
        "",
        "the path of an existing PEM file, or empty",
        _optional_file,
        "Certificate chain (PEM): the server's, set with FACESTREAM_TLS_KEY to serve TLS; "
        "for the `facestream` client, its own client certificate.",
    ),
    Variable(
        "FACESTREAM_TLS_KEY",
        "tls_key",
        "",
        "the path of an existing PEM file, or empty",
        _optional_file,
        "Private key (PEM) of FACESTREAM_TLS_CERT.",
    ),
    Variable(
        "FACESTREAM_TLS_CLIENT_CA",
        "tls_client_ca",
        "",
        "the path of an existing PEM file, or empty",
        _optional_file,
        "CA (PEM) whose client certificates the server requires (mTLS); the certificate's CN "
        "or SAN names a principal of FACESTREAM_AUTH_FILE.",
    ),
    Variable(
        "FACESTREAM_CLIENT_TOKEN",
        "client_token",
        "",
        "a bearer token without spaces, or empty",
        _client_token,
        "Token the `facestream submit/watch` client sends (when the server wants one).",
        secret=True,
    ),
    Variable(
        "FACESTREAM_TLS_CA",
        "tls_ca",
        "",
        "the path of an existing PEM file, or empty",
        _optional_file,
        "CA certificate (PEM) the client trusts; set it to connect over TLS.",
    ),
    Variable(
        "FACESTREAM_LOG_LEVEL",
        "log_level",
        "INFO",
        f"one of {', '.join(_LOG_LEVELS)}",
        _log_level,
        "Level of facestream's log.",
    ),
    Variable(
        "FACESTREAM_LOG_FORMAT",
        "log_format",
        "text",
        f"one of {', '.join(LOG_FORMATS)}",
        _choice(LOG_FORMATS),
        "text: one readable line per event; json: one JSON object per line (time, level, "
        "message, worker, and request_id and stage where the event has them).",
    ),
    Variable(
        "FACESTREAM_METRICS_HOST",
        "metrics_host",
        "127.0.0.1",
        "a host name or IP address",
        _host,
        "Address the Prometheus /metrics endpoints of this process bind to.",
    ),
    Variable(
        "FACESTREAM_METRICS_PORT",
        "metrics_port",
        "9464",
        "a port 1-65535, or 0 (no endpoint)",
        _integer_or_zero(1, 65535),
        "Port of the gRPC server's Prometheus /metrics endpoint.",
    ),
    Variable(
        "FACESTREAM_DATAFLOW_METRICS_PORT",
        "dataflow_metrics_port",
        "9465",
        "a port 1-65535, or 0 (no endpoint)",
        _integer_or_zero(1, 65535),
        "Port of a dataflow process's Prometheus /metrics endpoint (one per process: give "
        "each process on one host its own).",
    ),
    Variable(
        "DEEPFACE_HOME",
        "deepface_home",
        str(Path.home()),
        "a directory path",
        _directory,
        "DeepFace's own variable: weights live in $DEEPFACE_HOME/.deepface/weights.",
    ),
)


@dataclass(frozen=True)
class Settings:
    """Validated configuration of one facestream process. Build it with `Settings.from_env`."""

    kafka_bootstrap: str
    kafka_security_protocol: str
    kafka_sasl_mechanism: str
    kafka_sasl_username: str
    kafka_sasl_password: str = field(repr=False)
    kafka_ssl_ca: Path | None
    topic_replication_factor: int
    topic_min_insync_replicas: int
    embedded_broker_port: int
    topic_requests: str
    topic_results: str
    topic_dead_letter: str
    partitions: int
    max_image_bytes: int
    max_pixels: int
    actions: tuple[str, ...]
    detector_backend: str
    mode: str
    engine: str
    precision: str
    engine_cache_dir: Path
    batch_size: int
    detection_max_side: int
    max_attempts: int
    attempts_dir: Path
    failpoint_crash_on: str
    grpc_address: str
    max_in_flight: int
    max_concurrent_rpcs: int
    max_held_image_bytes: int
    max_watchers: int
    ack_timeout: float
    result_timeout: float
    auth_tokens: tuple[str, ...] = field(repr=False)  # secrets: never in a repr or a log
    auth_file: Path | None
    max_in_flight_per_principal: int
    tls_cert: Path | None
    tls_key: Path | None
    tls_client_ca: Path | None
    client_token: str = field(repr=False)
    tls_ca: Path | None
    log_level: str
    log_format: str
    metrics_host: str
    metrics_port: int
    dataflow_metrics_port: int
    deepface_home: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read and validate every variable; raise SettingsError listing all bad ones."""
        values: dict[str, Any] = {}
        problems: list[str] = []
        for var in VARIABLES:
            raw = environ.get(var.name, var.default)
            try:
                values[var.field] = var.parse(raw)
            except ValueError:
                shown = "(value hidden: a secret)" if var.secret else f"={raw!r}"
                problems.append(f"{var.name}{shown} is not valid: expected {var.accepts}.")
        if not problems and (values["tls_cert"] is None) != (values["tls_key"] is None):
            problems.append(
                "FACESTREAM_TLS_CERT and FACESTREAM_TLS_KEY must be set together "
                "(both for TLS, neither for plaintext)."
            )
        if (
            not problems
            and values["kafka_security_protocol"].startswith("SASL")
            and not (
                values["kafka_sasl_mechanism"]
                and values["kafka_sasl_username"]
                and values["kafka_sasl_password"]
            )
        ):
            problems.append(
                "FACESTREAM_KAFKA_SECURITY_PROTOCOL="
                f"{values['kafka_security_protocol']} needs FACESTREAM_KAFKA_SASL_MECHANISM, "
                "FACESTREAM_KAFKA_SASL_USERNAME and FACESTREAM_KAFKA_SASL_PASSWORD."
            )
        if (
            not problems
            and values["topic_min_insync_replicas"] > values["topic_replication_factor"]
        ):
            problems.append(
                "FACESTREAM_TOPIC_MIN_INSYNC_REPLICAS must not exceed "
                "FACESTREAM_TOPIC_REPLICATION_FACTOR: no write could be acknowledged."
            )
        if not problems and values["detection_max_side"] is None:
            values["detection_max_side"] = AUTO_DETECTION_MAX_SIDE[values["mode"]]
        if not problems and values["engine"] == "tensorflow" and values["precision"] == "bf16":
            problems.append(
                "FACESTREAM_PRECISION=bf16 needs FACESTREAM_ENGINE=openvino: the TensorFlow "
                "engine computes in fp32 only."
            )
        if not problems and values["tls_client_ca"] and values["tls_cert"] is None:
            problems.append(
                "FACESTREAM_TLS_CLIENT_CA needs FACESTREAM_TLS_CERT and FACESTREAM_TLS_KEY: "
                "client certificates are checked over TLS."
            )
        if not problems:
            topics = [
                values["topic_requests"],
                values["topic_results"],
                values["topic_dead_letter"],
            ]
            if len(set(topics)) != len(topics):
                problems.append(
                    "FACESTREAM_TOPIC_REQUESTS, FACESTREAM_TOPIC_RESULTS and "
                    f"FACESTREAM_TOPIC_DEAD_LETTER must differ, got {', '.join(topics)}."
                )
        if problems:
            raise SettingsError("Invalid facestream settings:\n  " + "\n  ".join(problems))
        return cls(**values)

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
            self.kafka_sasl_password,
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
