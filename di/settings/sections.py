"""facestream's settings, section by section. Each setting is declared once: its type, its
variable (FACESTREAM_ and its name in upper case, or the `env` it names), its default as
written in the environment, what it accepts and what it does. The configuration page's
table is generated from these declarations (`python -m di.settings`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SecretStr, model_validator

from di.settings import values as v
from di.settings.section import Section, setting
from facestream.engines import ENGINES, PRECISIONS, EngineError, check_precision
from facestream.gallery_store import GallerySearch
from facestream.kafka_config import SASL_MECHANISMS, SECURITY_PROTOCOLS, KafkaSecurity, TopicSpec
from facestream.models import ACTIONS, ATTRIBUTE_ACTIONS, DETECTOR_BACKENDS, weights_dir_of
from facestream.tracking import TrackingPolicy

# The share of FACESTREAM_EMBEDDED_BROKER_BUDGET at which the server logs a warning and
# `facestream up` prints one.
EMBEDDED_BROKER_WARN_AT = 0.8
# Room for the protobuf envelope around the image bytes in one Kafka record.
KAFKA_RECORD_HEADROOM_BYTES = 1 * v.MIB
LOG_FORMATS = ("text", "json")
MODES = ("exact", "fast")
WHOLE_FRAME_SEARCHES = ("proposals", "detector")
# FACESTREAM_DETECTION_MAX_SIDE=auto per mode: fast mode detects large images smaller.
AUTO_DETECTION_MAX_SIDE = {"exact": 2048, "fast": 1024}
_PEM_FILE = "the path of an existing PEM file, or empty"


def parsed(parse: Any) -> Any:
    """The annotation metadata that parses a variable's text with `parse`."""
    return BeforeValidator(parse)


# librdkafka's default; and the embedded broker's, short (KafkaSettings.fetch_wait_ms).
KAFKA_FETCH_WAIT_MS = 500
EMBEDDED_FETCH_WAIT_MS = 20


class KafkaSettings(Section):
    """Where Kafka is and how facestream's topics are made (every process)."""

    title = "Kafka"

    kafka_bootstrap: Annotated[str, parsed(v.bootstrap)] = setting(
        "", "Kafka bootstrap servers. Empty: use the embedded broker on 127.0.0.1."
    )
    kafka_security_protocol: Annotated[Literal[SECURITY_PROTOCOLS], v.STRIPPED] = setting(
        "PLAINTEXT",
        "How every facestream client connects to Kafka (producers, consumers, topic creation).",
    )
    kafka_sasl_mechanism: Annotated[Literal[("", *SASL_MECHANISMS)], v.STRIPPED] = setting(
        "", "SASL mechanism, with a SASL_* protocol."
    )
    kafka_sasl_username: Annotated[str, parsed(str.strip)] = setting(
        "", "SASL user name, with a SASL_* protocol.", accepts="a user name, or empty"
    )
    kafka_sasl_password: Annotated[SecretStr, parsed(str)] = setting(
        "",
        "SASL password, with a SASL_* protocol. Never printed or logged.",
        accepts="a password, or empty",
    )
    kafka_ssl_ca: Annotated[Path | None, parsed(v.optional_file)] = setting(
        "",
        "CA (PEM) that signed Kafka's certificates, with SSL or SASL_SSL (else the system's).",
        accepts=_PEM_FILE,
    )
    topic_replication_factor: Annotated[int, Field(ge=1, le=32)] = setting(
        "1",
        "Replicas of each topic facestream creates; 1 for the embedded broker, 3 on a "
        "production Kafka (acks=all means little with one copy).",
    )
    topic_min_insync_replicas: Annotated[int, Field(ge=1, le=32)] = setting(
        "1",
        "Replicas that must have a record before Kafka acknowledges it (min.insync.replicas "
        "of the topics facestream creates); 2 with 3 replicas.",
        accepts="an integer from 1 to 32, at most the replication factor",
    )
    embedded_broker_port: Annotated[int, Field(ge=1, le=65535)] = setting(
        "19092", "Port of the embedded broker (used only when FACESTREAM_KAFKA_BOOTSTRAP is empty)."
    )
    embedded_broker_budget: Annotated[int, v.BYTES, Field(ge=1 * v.MIB, le=1024 * 1024 * v.MIB)] = (
        setting(
            "1GiB",
            "Bytes the embedded broker may hold (it keeps every record in memory, without "
            "retention): at 80% a warning is logged; past it new images and frames are "
            "refused with broker.full, and those accepted are still answered. Used only when "
            "FACESTREAM_KAFKA_BOOTSTRAP is empty; a real Kafka has retention instead.",
        )
    )
    topic_requests: Annotated[str, parsed(v.topic)] = setting(
        "faces.requests", "Topic of submitted images (ImageSubmitted records)."
    )
    topic_results: Annotated[str, parsed(v.topic)] = setting(
        "faces.results", "Topic of results, one AnalysisResult per image."
    )
    topic_dead_letter: Annotated[str, parsed(v.topic)] = setting(
        "faces.dead-letter",
        "Topic of records that could not be parsed, with the reason in headers.",
    )
    topic_tracks: Annotated[str, parsed(v.topic)] = setting(
        "faces.tracks",
        "Topic of track summaries (TrackSummary), one per face followed across a stream's frames.",
    )
    partitions: Annotated[int, Field(ge=1, le=1024)] = setting(
        "4", "Partitions of each topic facestream creates; keep >= total dataflow workers."
    )
    topic_retention: Annotated[float, Field(ge=60, le=10 * 365 * 86400), v.SECONDS] = setting(
        "86400",
        "How long the topics facestream creates keep records (retention.ms): a day by "
        "default; a video stream writes a lot (5 frames/s of 100 KB is 43 GB a day).",
    )
    topic_retention_bytes: Annotated[
        int, v.BYTES, Field(ge=1024 * 1024, le=1024 * 1024 * v.MIB)
    ] = setting(
        "1GiB",
        "Bytes each partition of those topics keeps at most (retention.bytes); the "
        "oldest records go first. The embedded broker ignores both (see Limits).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSettings:
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
        names = self.topic_names
        if len(set(names)) != len(names):
            raise ValueError(
                "FACESTREAM_TOPIC_REQUESTS, FACESTREAM_TOPIC_RESULTS, "
                "FACESTREAM_TOPIC_DEAD_LETTER and FACESTREAM_TOPIC_TRACKS must differ, got "
                f"{', '.join(names)}."
            )
        return self

    @property
    def topic_names(self) -> list[str]:
        """The topics facestream creates: requests, results, dead letters, tracks."""
        return [self.topic_requests, self.topic_results, self.topic_dead_letter, self.topic_tracks]

    @property
    def uses_embedded_broker(self) -> bool:
        """True when no Kafka is configured and facestream runs its own broker."""
        return not self.kafka_bootstrap

    @property
    def fetch_wait_ms(self) -> int:
        """How long a consumer's fetch may wait at the broker for records. Kafka answers a
        waiting fetch as soon as a record comes; the embedded broker answers only when the
        wait is over, which added a quarter of a second on average to every hop of a frame
        (requests to the dataflow, results to the server), so its fetches wait briefly."""
        return EMBEDDED_FETCH_WAIT_MS if self.uses_embedded_broker else KAFKA_FETCH_WAIT_MS

    @property
    def bootstrap_servers(self) -> str:
        """Where Kafka clients connect: the configured Kafka or the embedded broker."""
        return self.kafka_bootstrap or f"127.0.0.1:{self.embedded_broker_port}"

    @property
    def security(self) -> KafkaSecurity:
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

    def topics(self, max_message_bytes: int) -> list[TopicSpec]:
        """The facestream topics, admitting records of `max_message_bytes`."""
        return [
            TopicSpec(
                name,
                self.partitions,
                max_message_bytes,
                self.topic_replication_factor,
                self.topic_min_insync_replicas,
                round(self.topic_retention * 1000),
                self.topic_retention_bytes,
            )
            for name in self.topic_names
        ]


class RequestSettings(Section):
    """What one request may be (the gRPC server and the dataflow check the same)."""

    title = "Requests"

    max_image_bytes: Annotated[int, v.BYTES, Field(ge=1024, le=512 * v.MIB)] = setting(
        "10MiB", "Largest accepted image, in bytes. Kafka limits are raised to fit it."
    )
    max_pixels: Annotated[int, Field(ge=1, le=1_000_000_000)] = setting(
        "40000000",
        "Largest accepted image in pixels (width x height), against decompression bombs.",
    )

    @property
    def kafka_max_message_bytes(self) -> int:
        """Record size limit for producers, topics and consumers: one image plus envelope."""
        return self.max_image_bytes + KAFKA_RECORD_HEADROOM_BYTES


class ModelSettings(Section):
    """Which DeepFace models answer and where their weights are (the gRPC server, which
    checks requests against them, the dataflow and `facestream models`)."""

    title = "Models"

    actions: Annotated[tuple[str, ...], parsed(v.subset(ACTIONS))] = setting(
        ",".join(ATTRIBUTE_ACTIONS),
        "Actions this deployment loads and allows, and those a request that names none gets."
        " embedding (VGG-Face, 16 KiB per face) is off unless listed here.",
    )
    detector_backend: Annotated[Literal[tuple(DETECTOR_BACKENDS)], v.STRIPPED] = setting(
        "opencv", "DeepFace face detector used when a request does not name its own."
    )
    deepface_home: Annotated[Path, parsed(v.directory)] = setting(
        "~",
        "DeepFace's own variable: weights live in $DEEPFACE_HOME/.deepface/weights.",
        env="DEEPFACE_HOME",
    )

    @property
    def weights_dir(self) -> Path:
        """Where DeepFace looks for (and downloads) model weights."""
        return weights_dir_of(self.deepface_home)


class AnalysisSettings(Section):
    """How the dataflow runs the models (the dataflow, and the benchmarks in process)."""

    title = "Analysis"

    mode: Annotated[Literal[MODES], v.STRIPPED] = setting(
        "exact",
        "exact: the results of DeepFace.analyze. fast: detection without DeepFace's "
        "full-image border, int8 (FACESTREAM_PRECISION=auto); its agreement with exact is in "
        "the docs/performance.md.",
    )
    engine: Annotated[Literal[ENGINES], v.STRIPPED] = setting(
        "openvino",
        "What runs the attribute models: OpenVINO (converted from the loaded Keras models; "
        "fastest, DeepFace's results in fp32) or TensorFlow (DeepFace's own path).",
    )
    precision: Annotated[Literal[("auto", *PRECISIONS)], v.STRIPPED] = setting(
        "auto",
        "auto: fp32 in exact mode; in fast mode int8 on OpenVINO (bf16 where the CPU has it, "
        "else fp32, when no calibration set can be built). int8 is quantized at first start "
        "on a calibration set of face crops, built from the public photos or by `facestream "
        "models calibrate DIR` (docs/performance.md). bf16 needs FACESTREAM_ENGINE=openvino "
        "and a CPU with bf16 (AVX-512 BF16 or AMX): refused at start-up otherwise.",
    )
    engine_cache_dir: Annotated[Path, parsed(v.directory)] = setting(
        "~/.cache/facestream/engines",
        "Where OpenVINO conversions are kept, keyed by the weights' hashes and the "
        "OpenVINO version, so that a restart skips them.",
    )
    batch_size: Annotated[int, Field(ge=1, le=256)] = setting(
        "8", "Faces per model call in the dataflow's batched analysis."
    )
    engine_threads: v.zero_or(1, 1024, "every core this process may use") = setting(
        "0",
        "Threads of the OpenVINO engine and of OpenCV's detection in each dataflow process. "
        "Several dataflow processes on one machine: give each its share of the cores "
        "(docs/operations.md).",
    )
    detection_max_side: v.zero_or(64, 65535, "never downscale") = setting(
        "auto",
        "Images with a longer side are downscaled for face detection only; faces are "
        "still cropped from the full image. 0 keeps DeepFace's results on every image.",
        accepts="auto (2048 in exact mode, 1024 in fast mode), 0 (never downscale) or an "
        "integer from 64 to 65535",
    )

    @model_validator(mode="before")
    @classmethod
    def _auto_detection_side(cls, values: dict[str, Any]) -> dict[str, Any]:
        """ "auto" is the mode's side (exact's while the mode itself is invalid)."""
        if str(values.get("detection_max_side", "auto")).strip() == "auto":
            mode = str(values.get("mode", "exact")).strip()
            side = AUTO_DETECTION_MAX_SIDE.get(mode, AUTO_DETECTION_MAX_SIDE["exact"])
            values = {**values, "detection_max_side": str(side)}
        return values

    @model_validator(mode="after")
    def _engine_computes_the_precision(self) -> AnalysisSettings:
        try:
            check_precision(self.engine, self.precision)
        except EngineError as error:
            raise ValueError(str(error)) from None
        return self


class DataflowSettings(Section):
    """How the dataflow keeps records it cannot finish (the dataflow)."""

    title = "Dataflow"

    max_attempts: Annotated[int, Field(ge=1, le=100)] = setting(
        "3",
        "Crashes of the dataflow on one record before it is quarantined (FAILED with "
        "request.poison, record to the dead-letter topic).",
    )
    attempts_dir: Annotated[Path, parsed(v.directory)] = setting(
        "~/.cache/facestream/attempts",
        "Where the dataflow counts attempts per record, durably; share it between the "
        "processes of a cluster (e.g. the recovery volume).",
    )
    failpoint_crash_on: Annotated[str, parsed(str.strip)] = setting(
        "",
        "Testing only: the dataflow process crashes (SIGSEGV) on requests whose id starts "
        "with this. Off when empty.",
        accepts="a request id prefix, or empty (off)",
    )


class GallerySettings(Section):
    """Where recognition's galleries are stored (the gRPC server and the dataflow;
    `facestream up` starts the embedded one)."""

    title = "Galleries"

    gallery_dsn: Annotated[SecretStr, parsed(str.strip)] = setting(
        "",
        "PostgreSQL (with pgvector) of the galleries, as a libpq connection string or URI. "
        "Empty: `facestream up` starts its embedded PostgreSQL and hands its address to its "
        "processes; a process started alone then has no gallery store (recognition answers "
        "gallery.unavailable). Never printed or logged.",
        accepts="a PostgreSQL connection string, or empty",
    )
    gallery_dir: Annotated[Path, parsed(v.directory)] = setting(
        "~/.local/state/facestream/postgres",
        "The embedded PostgreSQL's folder (its data and socket), kept across restarts.",
    )
    gallery_pool_size: Annotated[int, Field(ge=1, le=64)] = setting(
        "4", "Connections to the gallery store each process keeps at most."
    )
    gallery_timeout: Annotated[float, Field(ge=0.1, le=60), v.SECONDS] = setting(
        "5", "How long a call waits for a connection to the gallery store before it fails."
    )
    gallery_write_retry: Annotated[float, Field(ge=0, le=3600), v.SECONDS] = setting(
        "30",
        "How long the dataflow retries an enrolment's write while the gallery store is "
        "unreachable, before the enrolment fails with gallery.unavailable.",
    )
    gallery_exact_limit: Annotated[int, Field(ge=0, le=1_000_000)] = setting(
        str(GallerySearch.exact_limit),
        "A gallery of at most this many faces is identified exactly, in each dataflow "
        "process's copy of its embeddings (16 KiB a face); a larger one by its faces' binary "
        "codes (512 bytes a face), the nearest ranked exactly in the store "
        "(docs/recognition.md, At scale). 0: every gallery by its codes.",
    )
    gallery_candidates: Annotated[int, Field(ge=1, le=10_000)] = setting(
        str(GallerySearch.candidates),
        "How many faces nearest by their codes a large gallery's search ranks by their exact "
        "distance: more finds the exact answer more often, and takes longer.",
    )
    gallery_copy_memory: Annotated[int, v.BYTES, Field(ge=1 * v.MIB, le=1024 * 1024 * v.MIB)] = (
        setting(
            f"{GallerySearch.copy_memory // (1024 * v.MIB)}GiB",
            "Memory the copies of galleries may take together in each dataflow process; past "
            "it the least recently used copy is dropped (and read again when next needed).",
        )
    )

    @property
    def dsn(self) -> str:
        return self.gallery_dsn.get_secret_value()

    @property
    def search(self) -> GallerySearch:
        return GallerySearch(
            self.gallery_exact_limit, self.gallery_candidates, self.gallery_copy_memory
        )


class TrackingSettings(Section):
    """How the dataflow follows faces across a stream's frames, and when it analyses a face
    again (the dataflow). docs/video.md."""

    title = "Tracking"

    tracking_reanalyse_after: Annotated[float, Field(ge=0, le=86400), v.SECONDS] = setting(
        "2",
        "A tracked face is analysed when its track opens, and again once this much stream "
        "time (the frames' positions in the video, never the wall clock) has passed since "
        "its track's last analysis. 0: no tracking, every face of every frame is analysed.",
        accepts="seconds of stream time, a number from 0 to 86400; 0 turns tracking off",
    )
    tracking_whole_frame_every: Annotated[float, Field(ge=0, le=86400), v.SECONDS] = setting(
        "0.6",
        "With tracking, a frame is searched for faces whole once this much stream time has "
        "passed since the last frame searched whole (and whenever no track is open); the "
        "frames between are searched only around the open tracks' expected faces, each at "
        "the scale of its face, so a face that comes into view is found within this time. "
        "0: every frame is searched whole.",
        accepts="seconds of stream time, a number from 0 to 86400; 0 searches every frame whole",
    )
    tracking_whole_frame_search: Annotated[Literal[WHOLE_FRAME_SEARCHES], v.STRIPPED] = setting(
        "proposals",
        "How fast mode searches a frame whole with tracking. proposals: MTCNN's two small "
        "networks (weights from the mtcnn package) propose where faces may be, and the "
        "detector searches only around them (a third of the cascade's cost over a whole "
        "frame). detector: the detector searches the whole frame, as exact mode always does.",
    )
    tracking_min_overlap: Annotated[float, Field(ge=0.01, le=1)] = setting(
        "0.3",
        "Least overlap (intersection over union of the boxes) for a face to continue a "
        "track of the frame before.",
    )
    tracking_max_missed: Annotated[int, Field(ge=0, le=10000)] = setting(
        "5",
        "Frames in a row a track may be missing from before it ends; a face seen again "
        "after that opens a new track.",
    )
    tracking_max_resize: Annotated[float, Field(ge=0.01, le=100)] = setting(
        "0.25",
        "A tracked face is analysed again when its box grew or shrank by more than this "
        "fraction of its size when it was last analysed (a face that comes closer shows "
        "more).",
    )
    tracking_max_move: Annotated[float, Field(ge=0.01, le=100)] = setting(
        "1",
        "A tracked face is analysed again when it moved further than this fraction of its "
        "size since it was last analysed.",
    )
    tracking_max_tracks: Annotated[int, Field(ge=1, le=1024)] = setting(
        "32", "Open tracks per stream; more faces in a frame are analysed untracked."
    )
    tracking_gap_timeout: Annotated[float, Field(ge=0.1, le=3600), v.SECONDS] = setting(
        "5",
        "How long the tracker waits for a stream's missing frame before it goes on without "
        "it (counted as skipped; the frame, if it comes, is answered untracked).",
    )
    tracking_max_buffered: Annotated[int, Field(ge=1, le=10000)] = setting(
        "64",
        "Frames the tracker holds per stream while it waits for a missing one; one more "
        "and it goes on without the missing frame.",
    )
    tracking_idle_timeout: Annotated[float, Field(ge=1, le=86400), v.SECONDS] = setting(
        "60",
        "A stream without frames for this long is closed: its tracks end (summarised, "
        "ended_by idle) and its state is dropped.",
    )

    @property
    def enabled(self) -> bool:
        """False when FACESTREAM_TRACKING_REANALYSE_AFTER is 0: every face is analysed."""
        return self.tracking_reanalyse_after > 0

    def proposes_faces(self, mode: str) -> bool:
        """Whether the tracker's whole-frame searches in `mode` go only around proposed
        faces: fast mode's only. Exact mode keeps DeepFace's bordered detection of whole
        frames: faces found around proposals are cropped the tracker's way, and on the
        bench's grid video their carried labels agreed 94% with a search of every frame
        (97% without proposals)."""
        return (
            mode == "fast"
            and self.enabled
            and self.tracking_whole_frame_every > 0
            and self.tracking_whole_frame_search == "proposals"
        )

    @property
    def policy(self) -> TrackingPolicy:
        """The tracker's policy of these settings."""
        return TrackingPolicy(
            min_overlap=self.tracking_min_overlap,
            max_missed=self.tracking_max_missed,
            reanalyse_after_ms=round(self.tracking_reanalyse_after * 1000),
            max_resize=self.tracking_max_resize,
            max_move=self.tracking_max_move,
            max_tracks=self.tracking_max_tracks,
        )


class ServerSettings(Section):
    """Where the gRPC server listens and how long it waits (the server; the address also
    the `facestream` client)."""

    title = "gRPC server"

    grpc_address: Annotated[str, parsed(v.address)] = setting(
        "127.0.0.1:50051", "Address the gRPC server binds to, and clients connect to."
    )
    ack_timeout: Annotated[float, Field(ge=0.1, le=300), v.SECONDS] = setting(
        "10",
        "Longest wait for Kafka to acknowledge a record; then the call fails with UNAVAILABLE.",
    )
    result_timeout: Annotated[float, Field(ge=1, le=86400), v.SECONDS] = setting(
        "300", "Longest wait of Analyze for its result when the client sets no shorter deadline."
    )
    stream_gap_timeout: Annotated[float, Field(ge=1, le=3600), v.SECONDS] = setting(
        "30",
        "How long WatchStream waits for a frame whose result is missing while later ones "
        "are there (a frame Kafka never acknowledged) before it skips it.",
    )


class LimitsSettings(Section):
    """What the gRPC server holds at once, in all and per principal (the server)."""

    title = "Limits"

    max_in_flight: Annotated[int, Field(ge=1, le=1_000_000)] = setting(
        "1024", "Publishes a gRPC server waits on at once; beyond it calls get RESOURCE_EXHAUSTED."
    )
    max_concurrent_rpcs: Annotated[int, Field(ge=1, le=1_000_000)] = setting(
        "1000",
        "Calls a gRPC server runs at once (streams included); beyond it calls get "
        "RESOURCE_EXHAUSTED.",
    )
    max_held_image_bytes: Annotated[int, v.BYTES, Field(ge=1024, le=64 * 1024 * v.MIB)] = setting(
        "256MiB",
        "Image bytes a gRPC server holds for calls in progress (an Analyze keeps its image "
        "until its result); beyond it calls get RESOURCE_EXHAUSTED.",
    )
    max_watchers: Annotated[int, Field(ge=1, le=100_000)] = setting(
        "256",
        "WatchResults and WatchStream streams a gRPC server serves at once; beyond it they get "
        "RESOURCE_EXHAUSTED.",
    )
    max_in_flight_per_principal: Annotated[int, Field(ge=1, le=1_000_000)] = setting(
        "256",
        "Publishes one principal may have waiting on Kafka at once; beyond it its calls get "
        "RESOURCE_EXHAUSTED.",
    )
    max_calls_per_principal: Annotated[int, Field(ge=1, le=1_000_000)] = setting(
        "250",
        "AnalyzeService calls one principal may run at once (streams included); beyond it "
        "its calls get RESOURCE_EXHAUSTED. Applies when authentication is on.",
    )
    max_watchers_per_principal: Annotated[int, Field(ge=1, le=100_000)] = setting(
        "64",
        "WatchResults and WatchStream streams one principal may hold open at once; beyond it "
        "its watches get RESOURCE_EXHAUSTED. Applies when authentication is on.",
    )
    max_held_image_bytes_per_principal: Annotated[
        int, v.BYTES, Field(ge=1024, le=64 * 1024 * v.MIB)
    ] = setting(
        "64MiB",
        "Image bytes the server holds for one principal's calls in progress; beyond it its "
        "calls get RESOURCE_EXHAUSTED. Applies when authentication is on.",
    )


class AuthSettings(Section):
    """Who may call the gRPC server (the server)."""

    title = "Authentication"

    auth_tokens: Annotated[tuple[SecretStr, ...], parsed(v.tokens)] = setting(
        "",
        "When set, gRPC calls need the metadata 'authorization: Bearer TOKEN' with one of these.",
    )
    auth_file: Annotated[Path | None, parsed(v.optional_file)] = setting(
        "",
        "Principals, their scopes and token hashes or certificate names (docs/security.md); "
        "re-read when it changes or on SIGHUP.",
        accepts="the path of an existing TOML file, or empty",
    )

    @property
    def token_values(self) -> tuple[str, ...]:
        """FACESTREAM_AUTH_TOKENS in the clear, for the authenticator only."""
        return tuple(token.get_secret_value() for token in self.auth_tokens)


class TlsSettings(Section):
    """Certificates of the gRPC server and of the `facestream` client."""

    title = "TLS"

    tls_cert: Annotated[Path | None, parsed(v.optional_file)] = setting(
        "",
        "Certificate chain (PEM): the server's, set with FACESTREAM_TLS_KEY to serve TLS; "
        "for the `facestream` client, its own client certificate.",
        accepts=_PEM_FILE,
    )
    tls_key: Annotated[Path | None, parsed(v.optional_file)] = setting(
        "", "Private key (PEM) of FACESTREAM_TLS_CERT.", accepts=_PEM_FILE
    )
    tls_client_ca: Annotated[Path | None, parsed(v.optional_file)] = setting(
        "",
        "CA (PEM) whose client certificates the server requires (mTLS); the certificate's CN "
        "or SAN names a principal of FACESTREAM_AUTH_FILE.",
        accepts=_PEM_FILE,
    )
    tls_ca: Annotated[Path | None, parsed(v.optional_file)] = setting(
        "", "CA certificate (PEM) the client trusts; set it to connect over TLS.", accepts=_PEM_FILE
    )

    @model_validator(mode="after")
    def _consistent(self) -> TlsSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError(
                "FACESTREAM_TLS_CERT and FACESTREAM_TLS_KEY must be set together "
                "(both for TLS, neither for plaintext)."
            )
        if self.tls_client_ca and self.tls_cert is None:
            raise ValueError(
                "FACESTREAM_TLS_CLIENT_CA needs FACESTREAM_TLS_CERT and FACESTREAM_TLS_KEY: "
                "client certificates are checked over TLS."
            )
        return self

    @property
    def certificate(self) -> tuple[Path, Path] | None:
        """(chain, key) when both are set."""
        if self.tls_cert is None or self.tls_key is None:
            return None
        return self.tls_cert, self.tls_key


class ClientSettings(Section):
    """What the `facestream submit/watch` client sends."""

    title = "Client"

    client_token: Annotated[SecretStr, parsed(v.one_token)] = setting(
        "", "Token the `facestream submit/watch` client sends (when the server wants one)."
    )


class ObservabilitySettings(Section):
    """Logs and metrics endpoints (every process)."""

    title = "Observability"

    log_level: Annotated[str, parsed(v.log_level)] = setting("INFO", "Level of facestream's log.")
    log_format: Annotated[Literal[LOG_FORMATS], v.STRIPPED] = setting(
        "text",
        "text: one readable line per event; json: one JSON object per line (time, level, "
        "message, worker, and request_id and stage where the event has them).",
    )
    metrics_host: Annotated[str, parsed(v.host)] = setting(
        "127.0.0.1", "Address the Prometheus /metrics endpoints of this process bind to."
    )
    metrics_port: v.zero_or(1, 65535, "no endpoint") = setting(
        "9464", "Port of the gRPC server's Prometheus /metrics endpoint."
    )
    dataflow_metrics_port: v.zero_or(1, 65535, "no endpoint") = setting(
        "9465",
        "Port of a dataflow process's Prometheus /metrics endpoint (one per process: give "
        "each process on one host its own).",
    )
