"""The dataflow's Prometheus metrics, and the steps that count what passes through the flow.

They live in prometheus_client's default registry, beside what Bytewax puts there itself
(`bytewax_kafka_consumer_lag`, per topic partition): one dataflow process serves both on
FACESTREAM_DATAFLOW_METRICS_PORT. Bytewax's own API server (BYTEWAX_DATAFLOW_API_ENABLED)
adds its per-step item counts and durations; facestream does not repeat those.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from dataflow.items import AnalyzedFace, DeadLetter
from dataflow.tracking_steps import TrackingCounts
from facestream.kafka_records import status_name
from facestream.v1 import records_pb2

# Seconds: from a millisecond decode to a minute-long wait behind a backlog.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
STAGES = ("decode", "detect", "analyze")


class DataflowMetrics:
    """What a dataflow process counts: images, faces, stage times, batches, dead letters."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.images = Counter(
            "facestream_dataflow_images_total",
            "Images with a result written, by status and error code ('' when none).",
            ["status", "code"],
            registry=registry,
        )
        self.faces = Counter(
            "facestream_dataflow_faces_total",
            "Faces through the attribute models, by status (ok, failed).",
            ["status"],
            registry=registry,
        )
        self.stage_seconds = Histogram(
            "facestream_dataflow_stage_duration_seconds",
            "Seconds one image spent in a stage (decode, detect, analyze).",
            ["stage"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.image_seconds = Histogram(
            "facestream_dataflow_image_duration_seconds",
            "Seconds from submission (or from reading the record) to the image's result.",
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.batch_faces = Histogram(
            "facestream_dataflow_batch_size_faces",
            "Faces per call of the attribute models.",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.dead_letters = Counter(
            "facestream_dataflow_dead_letters_total",
            "Records written to the dead-letter topic, by reason code.",
            ["code"],
            registry=registry,
        )
        self.tracked_faces = Counter(
            "facestream_dataflow_tracked_faces_total",
            "Faces of tracked streams' frames, by decision: analysed (the models ran), "
            "carried (its track's attributes), untracked (a late frame, or beyond the track "
            "cap).",
            ["decision"],
            registry=registry,
        )
        self.stream_frames = Counter(
            "facestream_dataflow_stream_frames_total",
            "Frames the tracker did not follow in order, by outcome: skipped (waited for, "
            "not there in time), late (came after their turn; answered untracked).",
            ["outcome"],
            registry=registry,
        )
        self.open_streams = Gauge(
            "facestream_dataflow_open_streams",
            "Streams the tracker of this process holds state for.",
            registry=registry,
        )
        self.open_tracks = Gauge(
            "facestream_dataflow_open_tracks",
            "Open tracks (faces being followed) in this process.",
            registry=registry,
        )
        self.tracks = Counter(
            "facestream_dataflow_tracks_total",
            "Tracks ended and summarised, by why they ended (missing, last_frame, idle).",
            ["ended_by"],
            registry=registry,
        )
        self.model_load_seconds = Gauge(
            "facestream_dataflow_model_load_seconds",
            "Seconds this process took to load its DeepFace models at start-up.",
            registry=registry,
        )


def count_result(
    _step_id: str, result: records_pb2.AnalysisResult, metrics: DataflowMetrics
) -> None:
    """Count one image's result: by status and error code, with its stage times."""
    metrics.images.labels(status_name(result).lower(), result.error.code).inc()
    timings = result.timings
    for stage in STAGES:
        seconds = getattr(timings, stage)
        if seconds > 0:  # 0: the image did not reach the stage
            metrics.stage_seconds.labels(stage).observe(seconds)
    metrics.image_seconds.observe(timings.total)


def count_face(_step_id: str, face: AnalyzedFace, metrics: DataflowMetrics) -> None:
    """Count one face out of the attribute models: ok, or failed with its batch."""
    metrics.faces.labels("ok" if face.error is None else "failed").inc()


def count_dead_letter(_step_id: str, letter: DeadLetter, metrics: DataflowMetrics) -> None:
    """Count one record on its way to the dead-letter topic, by reason code."""
    metrics.dead_letters.labels(letter.code).inc()


def count_tracking(counts: TrackingCounts, metrics: DataflowMetrics) -> None:
    """Count what one call of the tracker did: faces by decision, frames skipped or late."""
    for decision in ("analysed", "carried", "untracked"):
        if amount := getattr(counts, decision):
            metrics.tracked_faces.labels(decision).inc(amount)
    for outcome in ("skipped", "late"):
        if amount := getattr(counts, outcome):
            metrics.stream_frames.labels(outcome).inc(amount)


def count_open(streams: int, tracks: int, metrics: DataflowMetrics) -> None:
    """Follow the tracker's open streams and tracks (changes: +1 opened, -1 closed)."""
    metrics.open_streams.inc(streams)
    metrics.open_tracks.inc(tracks)


def count_track(_step_id: str, summary: records_pb2.TrackSummary, metrics: DataflowMetrics) -> None:
    """Count one ended track, by why it ended."""
    metrics.tracks.labels(summary.ended_by).inc()
