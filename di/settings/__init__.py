"""facestream's settings: small typed sections (`sections.py`), composed into the settings
of each kind of process, read once from the environment by that process's composition
root. A process validates the sections it uses and nothing else.

- `ServerProcessSettings`: `python -m grpc_server`.
- `DataflowProcessSettings`: `python -m bytewax.run dataflow`.
- `ClientProcessSettings`: `facestream submit / watch / health`.
- `Settings`: every section, for what starts the whole system (the demo, the local
  system, the benchmarks), which hands each child its environment.
"""

from __future__ import annotations

from di.settings.section import (
    ProcessSettings,
    Section,
    SettingsError,
    accepts,
    environment_variable,
    is_secret,
)
from di.settings.sections import (
    EMBEDDED_BROKER_WARN_AT,
    AnalysisSettings,
    AuthSettings,
    ClientSettings,
    DataflowSettings,
    GallerySettings,
    KafkaSettings,
    LimitsSettings,
    ModelSettings,
    ObservabilitySettings,
    RequestSettings,
    ServerSettings,
    TlsSettings,
    TrackingSettings,
)
from facestream.kafka_config import TopicSpec


class KafkaRecords:
    """For settings with Kafka and request sections: the record size that fits the
    largest image, and the topics made for it."""

    kafka: KafkaSettings
    requests: RequestSettings

    @property
    def kafka_max_message_bytes(self) -> int:
        return self.requests.kafka_max_message_bytes

    @property
    def topics(self) -> list[TopicSpec]:
        return self.kafka.topics(self.kafka_max_message_bytes)


class ServerProcessSettings(KafkaRecords, ProcessSettings):
    """The gRPC server's settings."""

    kafka: KafkaSettings
    requests: RequestSettings
    models: ModelSettings
    server: ServerSettings
    limits: LimitsSettings
    auth: AuthSettings
    tls: TlsSettings
    galleries: GallerySettings
    observability: ObservabilitySettings


class DataflowProcessSettings(KafkaRecords, ProcessSettings):
    """A dataflow process's settings."""

    kafka: KafkaSettings
    requests: RequestSettings
    models: ModelSettings
    analysis: AnalysisSettings
    tracking: TrackingSettings
    dataflow: DataflowSettings
    galleries: GallerySettings
    observability: ObservabilitySettings


class ClientProcessSettings(ProcessSettings):
    """The `facestream` client's settings: where the server is and how to reach it."""

    server: ServerSettings
    tls: TlsSettings
    client: ClientSettings


class Settings(KafkaRecords, ProcessSettings):
    """Every section: for what starts the whole system and hands each child its
    environment (demo, local system, benchmarks), and for the configuration page's table."""

    kafka: KafkaSettings
    requests: RequestSettings
    models: ModelSettings
    analysis: AnalysisSettings
    tracking: TrackingSettings
    dataflow: DataflowSettings
    server: ServerSettings
    limits: LimitsSettings
    auth: AuthSettings
    tls: TlsSettings
    client: ClientSettings
    galleries: GallerySettings
    observability: ObservabilitySettings


ENVIRONMENT_VARIABLES = tuple(
    variable
    for section in Settings.section_types().values()
    for variable in section.variables().values()
)


def configuration_table() -> str:
    """The table of docs/configuration.md, made from the declarations: one row per
    variable, grouped by section."""
    rows = ["| variable | default | accepts | what it does |", "|---|---|---|---|"]
    for section in Settings.section_types().values():
        about = " ".join((section.__doc__ or "").split())
        rows.append(f"| **{section.title}** | | | {about} |")
        for name, field in section.model_fields.items():
            default = f"`{field.default}`" if field.default else "*(empty)*"
            rows.append(
                f"| `{environment_variable(name, field)}` | {default} | {accepts(field)} | "
                f"{field.description} |"
            )
    return "\n".join(rows)


__all__ = [
    "EMBEDDED_BROKER_WARN_AT",
    "ENVIRONMENT_VARIABLES",
    "AnalysisSettings",
    "AuthSettings",
    "ClientProcessSettings",
    "ClientSettings",
    "DataflowProcessSettings",
    "DataflowSettings",
    "GallerySettings",
    "KafkaSettings",
    "LimitsSettings",
    "ModelSettings",
    "ObservabilitySettings",
    "ProcessSettings",
    "RequestSettings",
    "Section",
    "ServerProcessSettings",
    "ServerSettings",
    "Settings",
    "SettingsError",
    "TlsSettings",
    "TrackingSettings",
    "configuration_table",
    "is_secret",
]
