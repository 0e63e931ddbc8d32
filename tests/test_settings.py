"""Settings: defaults, parsing, and a clear message for every kind of bad value."""

from __future__ import annotations

from pathlib import Path

import pytest
from annotated_types import Ge

from di.settings import (
    ENVIRONMENT_VARIABLES,
    ClientProcessSettings,
    DataflowProcessSettings,
    ServerProcessSettings,
    Settings,
    SettingsError,
    accepts,
    configuration_table,
    is_secret,
)
from di.settings.section import said_by_type
from facestream.models import DETECTOR_BACKENDS

CONFIGURATION_PAGE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def test_defaults_use_the_embedded_broker_and_all_actions(tmp_path):
    settings = Settings.from_env({"DEEPFACE_HOME": str(tmp_path)})
    assert settings.kafka.uses_embedded_broker
    assert settings.kafka.bootstrap_servers == "127.0.0.1:19092"
    assert settings.kafka.topic_requests == "faces.requests"
    assert settings.kafka.topic_results == "faces.results"
    assert settings.kafka.topic_dead_letter == "faces.dead-letter"
    assert settings.models.actions == ("age", "gender", "emotion", "race")
    assert settings.models.detector_backend == "opencv"
    assert settings.requests.max_image_bytes == 10 * 1024 * 1024
    # Kafka must admit one maximum-size image plus its protobuf envelope.
    assert settings.kafka_max_message_bytes > settings.requests.max_image_bytes
    assert settings.models.weights_dir == tmp_path / ".deepface" / "weights"
    assert settings.auth.auth_tokens == ()
    assert settings.tls.tls_cert is None


def test_values_are_parsed_into_types(tmp_path):
    cert = tmp_path / "cert.pem"
    key = tmp_path / "key.pem"
    cert.write_text("cert")
    key.write_text("key")
    settings = Settings.from_env(
        {
            "FACESTREAM_KAFKA_BOOTSTRAP": "kafka-1:9092, kafka-2:9092",
            "FACESTREAM_MAX_IMAGE_BYTES": "12MiB",
            "FACESTREAM_ACTIONS": "race, age",
            "FACESTREAM_PARTITIONS": "8",
            "FACESTREAM_AUTH_TOKENS": "alpha,beta",
            "FACESTREAM_TLS_CERT": str(cert),
            "FACESTREAM_TLS_KEY": str(key),
            "FACESTREAM_LOG_LEVEL": "debug",
            "FACESTREAM_GRPC_ADDRESS": "[::1]:6000",
            "FACESTREAM_ACK_TIMEOUT": "2.5",
            "FACESTREAM_CLIENT_TOKEN": "alpha",
        }
    )
    assert not settings.kafka.uses_embedded_broker
    assert settings.kafka.bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert settings.requests.max_image_bytes == 12 * 1024 * 1024
    assert settings.models.actions == ("race", "age")
    assert settings.kafka.partitions == 8
    assert [token.get_secret_value() for token in settings.auth.auth_tokens] == ["alpha", "beta"]
    assert (settings.tls.tls_cert, settings.tls.tls_key) == (cert, key)
    assert settings.observability.log_level == "DEBUG"
    assert settings.server.grpc_address == "[::1]:6000"
    assert settings.server.ack_timeout == 2.5
    assert settings.client.client_token.get_secret_value() == "alpha"


BAD_VALUES = [
    ("FACESTREAM_KAFKA_BOOTSTRAP", "localhost", "host:port"),
    ("FACESTREAM_EMBEDDED_BROKER_PORT", "70000", "an integer from 1 to 65535"),
    ("FACESTREAM_EMBEDDED_BROKER_PORT", "abc", "an integer from 1 to 65535"),
    ("FACESTREAM_TOPIC_REQUESTS", "bad topic!", "a Kafka topic name"),
    ("FACESTREAM_TOPIC_RESULTS", "", "a Kafka topic name"),
    ("FACESTREAM_TOPIC_DEAD_LETTER", "x" * 250, "a Kafka topic name"),
    ("FACESTREAM_PARTITIONS", "0", "an integer from 1 to 1024"),
    ("FACESTREAM_MAX_IMAGE_BYTES", "10MB", "KiB/MiB/GiB/TiB suffix"),
    ("FACESTREAM_MAX_IMAGE_BYTES", "1GiB", "from 1KiB to 512MiB"),
    ("FACESTREAM_MAX_PIXELS", "-5", "an integer from 1 to 1000000000"),
    ("FACESTREAM_ACTIONS", "age,smile", "subset of age, gender, emotion, race"),
    ("FACESTREAM_ACTIONS", "age,age", "each at most once"),
    ("FACESTREAM_ACTIONS", "", "subset of age, gender, emotion, race"),
    ("FACESTREAM_DETECTOR_BACKEND", "yolov8n", "one of opencv, mtcnn"),
    ("FACESTREAM_BATCH_SIZE", "1000", "an integer from 1 to 256"),
    ("FACESTREAM_DETECTION_MAX_SIDE", "10", "0 (never downscale) or an integer from 64 to 65535"),
    ("FACESTREAM_EMBEDDED_BROKER_BUDGET", "2TiB", "a size from 1MiB to 1TiB"),
    ("FACESTREAM_MODE", "quick", "one of exact, fast"),
    ("FACESTREAM_GRPC_ADDRESS", "50051", "host:port"),
    ("FACESTREAM_MAX_IN_FLIGHT", "0", "an integer from 1 to 1000000"),
    ("FACESTREAM_ACK_TIMEOUT", "never", "seconds, a number from 0.1 to 300"),
    ("FACESTREAM_RESULT_TIMEOUT", "0.5", "seconds, a number from 1 to 86400"),
    ("FACESTREAM_TLS_CA", "/nonexistent/ca.pem", "the path of an existing PEM file"),
    ("FACESTREAM_TLS_CERT", "/nonexistent/cert.pem", "the path of an existing PEM file"),
    ("FACESTREAM_TLS_KEY", "/nonexistent/key.pem", "the path of an existing PEM file"),
    ("FACESTREAM_LOG_LEVEL", "LOUD", "one of DEBUG, INFO, WARNING, ERROR"),
    ("FACESTREAM_TRACKING_WHOLE_FRAME_SEARCH", "haar", "one of proposals, detector"),
    ("DEEPFACE_HOME", str(CONFIGURATION_PAGE), "a directory path"),
]


@pytest.mark.parametrize(("name", "value", "expected"), BAD_VALUES)
def test_bad_value_names_the_variable_and_what_it_accepts(name, value, expected):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({name: value})
    message = str(caught.value)
    assert f"{name}={value!r} is not valid" in message
    assert expected in message
    assert message.count("is not valid") == 1


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("FACESTREAM_CLIENT_TOKEN", "s3cret two words", "a bearer token without spaces"),
        ("FACESTREAM_AUTH_TOKENS", "good-s3cret, bad s3cret", "bearer tokens without spaces"),
    ],
)
def test_a_bad_secret_is_named_but_never_printed(name, value, expected):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({name: value})
    message = str(caught.value)
    assert f"{name}(value hidden: a secret) is not valid" in message
    assert expected in message
    assert "s3cret" not in message


def test_every_bad_variable_is_reported_at_once():
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"FACESTREAM_BATCH_SIZE": "0", "FACESTREAM_PARTITIONS": "many"})
    assert "FACESTREAM_BATCH_SIZE='0'" in str(caught.value)
    assert "FACESTREAM_PARTITIONS='many'" in str(caught.value)


def test_tls_cert_without_key_is_refused(tmp_path):
    cert = tmp_path / "cert.pem"
    cert.write_text("cert")
    with pytest.raises(SettingsError, match="must be set together"):
        Settings.from_env({"FACESTREAM_TLS_CERT": str(cert)})


def test_topics_must_differ():
    with pytest.raises(SettingsError, match="must differ"):
        Settings.from_env({"FACESTREAM_TOPIC_RESULTS": "faces.requests"})


def all_fields():
    return [
        field
        for section in Settings.section_types().values()
        for field in section.model_fields.values()
    ]


def test_every_setting_has_one_variable_a_default_and_words_for_people():
    assert len(set(ENVIRONMENT_VARIABLES)) == len(ENVIRONMENT_VARIABLES) == len(all_fields())
    assert all(v.startswith("FACESTREAM_") for v in ENVIRONMENT_VARIABLES if v != "DEEPFACE_HOME")
    for field in all_fields():
        assert field.description and accepts(field)  # declared, or its parser says
        assert isinstance(field.default, str)  # as written in the environment
    for section in Settings.section_types().values():
        assert section.title and section.__doc__


def test_the_configuration_page_holds_the_generated_table():
    table = configuration_table()
    assert table in CONFIGURATION_PAGE.read_text(), "regenerate it: python -m di.settings"
    sections = len(Settings.section_types())
    assert len(table.splitlines()) == 2 + sections + len(ENVIRONMENT_VARIABLES)
    assert "| `DEEPFACE_HOME` | `~` |" in table


def test_each_process_validates_the_sections_it_uses():
    dataflow_only = {"FACESTREAM_BATCH_SIZE": "0", "FACESTREAM_FAILPOINT_CRASH_ON": " "}
    server_only = {"FACESTREAM_MAX_WATCHERS": "0", "FACESTREAM_AUTH_TOKENS": "a b"}
    client_only = {"FACESTREAM_CLIENT_TOKEN": "a b"}
    assert ServerProcessSettings.from_env(dataflow_only | client_only)
    assert DataflowProcessSettings.from_env(server_only | client_only)
    assert ClientProcessSettings.from_env(dataflow_only | {"FACESTREAM_MAX_WATCHERS": "0"})
    with pytest.raises(SettingsError, match="FACESTREAM_BATCH_SIZE='0'"):
        DataflowProcessSettings.from_env(dataflow_only)
    with pytest.raises(SettingsError, match="FACESTREAM_MAX_WATCHERS='0'"):
        ServerProcessSettings.from_env(server_only)
    with pytest.raises(SettingsError, match="FACESTREAM_CLIENT_TOKEN"):
        ClientProcessSettings.from_env(client_only)
    # The whole system's settings check every section, and report all bad ones at once.
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(dataflow_only | server_only | client_only)
    assert str(caught.value).count("is not valid") == 4


def test_secrets_are_the_fields_typed_secret():
    secret = {
        name
        for section in Settings.section_types().values()
        for name, field in section.model_fields.items()
        if is_secret(field)
    }
    assert secret == {"kafka_sasl_password", "auth_tokens", "client_token", "gallery_dsn"}


def test_secrets_are_never_in_a_repr():
    settings = Settings.from_env(
        {
            "FACESTREAM_AUTH_TOKENS": "alpha-s3cret,beta-s3cret",
            "FACESTREAM_CLIENT_TOKEN": "client-s3cret",
            "FACESTREAM_KAFKA_SASL_PASSWORD": "kafka-s3cret",
        }
    )
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings)
    assert settings.client.client_token.get_secret_value() == "client-s3cret"


def test_detector_backends_are_deepface_detectors():
    from deepface.modules.modeling import AVAILABLE_MODELS

    known = set(AVAILABLE_MODELS["face_detector"]) | {"skip"}
    assert set(DETECTOR_BACKENDS) <= known


def test_kafka_security_reaches_the_client_configs_and_hides_the_password(tmp_path):
    from facestream.kafka_config import consumer_config, producer_config

    ca = tmp_path / "kafka-ca.pem"
    ca.write_text("ca")
    settings = Settings.from_env(
        {
            "FACESTREAM_KAFKA_BOOTSTRAP": "kafka-1:9093",
            "FACESTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "FACESTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "FACESTREAM_KAFKA_SASL_USERNAME": "facestream",
            "FACESTREAM_KAFKA_SASL_PASSWORD": "pa55-word",
            "FACESTREAM_KAFKA_SSL_CA": str(ca),
        }
    )
    expected = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "facestream",
        "sasl.password": "pa55-word",
        "ssl.ca.location": str(ca),
    }
    security = settings.kafka.security
    for config in (
        producer_config(settings.kafka.bootstrap_servers, 1024, security),
        consumer_config(settings.kafka.bootstrap_servers, 1024, "group", security),
    ):
        assert expected.items() <= config.items()
    assert "pa55-word" not in repr(settings) and "pa55-word" not in repr(security)
    # The embedded broker is plaintext whatever the settings say.
    assert Settings.from_env({}).kafka.security.client_config == {"security.protocol": "PLAINTEXT"}


def test_consumers_of_the_embedded_broker_wait_briefly_for_records_and_kafka_keeps_its_default():
    from di.dataflow_root import request_source
    from di.settings import DataflowProcessSettings

    embedded = Settings.from_env({}).kafka
    named = Settings.from_env({"FACESTREAM_KAFKA_BOOTSTRAP": "kafka-1:9092"}).kafka
    assert (embedded.fetch_wait_ms, named.fetch_wait_ms) == (20, 500)
    # The dataflow's request consumer is given it.
    process = DataflowProcessSettings.from_env({})
    assert request_source(process).add_config["fetch.wait.max.ms"] == 20


def test_sasl_needs_its_credentials_and_never_prints_the_password():
    with pytest.raises(SettingsError, match="needs FACESTREAM_KAFKA_SASL_MECHANISM") as caught:
        Settings.from_env(
            {
                "FACESTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "FACESTREAM_KAFKA_SASL_PASSWORD": "hunter2-secret",
            }
        )
    assert "hunter2-secret" not in str(caught.value)


def test_topics_get_the_replication_and_min_insync_replicas_asked_for():
    settings = Settings.from_env(
        {"FACESTREAM_TOPIC_REPLICATION_FACTOR": "3", "FACESTREAM_TOPIC_MIN_INSYNC_REPLICAS": "2"}
    )
    for topic in settings.topics:
        assert topic.replication_factor == 3
        assert topic.config["min.insync.replicas"] == "2"
    with pytest.raises(SettingsError, match="must not exceed"):
        Settings.from_env({"FACESTREAM_TOPIC_MIN_INSYNC_REPLICAS": "2"})


def test_a_bound_is_written_once_in_its_type():
    # What a setting accepts is said from its type's bounds (Field(ge=, le=), Literal) or
    # its parser (di/settings/values.py); a declared `accepts` is only for what they cannot
    # know, so it never repeats them.
    repeated = []
    for field in all_fields():
        declared = (field.json_schema_extra or {}).get("accepts")
        if declared and declared == said_by_type(field):
            repeated.append(declared)
    assert not repeated, repeated
    bounded = [f for f in all_fields() if any(isinstance(m, Ge) for m in f.metadata)]
    assert len(bounded) >= 30  # the numbers' bounds are pydantic constraints


@pytest.mark.parametrize(
    ("name", "value", "accepted"),
    [
        ("FACESTREAM_EMBEDDED_BROKER_BUDGET", "1TiB", 1024**4),
        ("FACESTREAM_EMBEDDED_BROKER_BUDGET", "1 MiB", 1024**2),
        ("FACESTREAM_ENGINE_THREADS", "0", 0),
        ("FACESTREAM_DETECTION_MAX_SIDE", "64", 64),
        ("FACESTREAM_MODE", " fast ", "fast"),
    ],
)
def test_a_bound_admits_its_ends(name, value, accepted):
    settings = Settings.from_env({name: value})
    values = [
        getattr(s, name.removeprefix("FACESTREAM_").lower(), None) for s in settings.sections()
    ]
    assert accepted in values
