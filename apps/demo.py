"""`facestream demo`: the whole system on one machine, in one command.

It starts the embedded broker (unless FACESTREAM_KAFKA_BOOTSTRAP names a Kafka), the
dataflow (`python -m bytewax.run dataflow -w 2`) and the gRPC server as child processes,
waits until they answer, enrols the astronaut of the public photos into a gallery (the
galleries' embedded PostgreSQL comes with `facestream up`'s system), sends the images
through the gRPC client with each face identified against it, then a short video composed
from the public photos as a stream (`facestream video`'s way), prints a table and a
summary, writes a report folder (the video as an animated WebP with boxes, tracks, names
and labels per frame, above the stills), and stops every child on the way out, Ctrl-C
included.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from apps.client_commands import analyze_images, describe_rpc_error
from apps.demo_video import compose_demo_video, write_animation
from apps.image_sources import IMAGE_SUFFIXES, NamedImage, demo_images, folder_images
from apps.live_view import LiveView
from apps.local_system import LocalSystemError, ready_system, say, stop_on_signals
from apps.report import (
    ReportEntry,
    VideoSection,
    annotate_image,
    frame_rows,
    summarize,
    write_report,
)
from apps.result_table import COLUMNS, error_row, format_table, result_rows
from apps.result_text import identity_text
from apps.video import FrameResult, VideoStream
from apps.video_source import open_video_source
from di import Settings, child_environment
from facestream.client import AnalyzeClient, identify_in
from facestream.models import (
    EMBEDDING,
    SYNTHETIC_WARNING,
    WeightsDownloadError,
    WeightState,
    check_weights,
    ensure_synthetic_weights,
    synthetic_deepface_home,
    weights_dir_of,
)
from facestream.v1 import records_pb2


class DemoError(RuntimeError):
    """The demo cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class DemoOptions:
    """What `facestream demo` was asked for."""

    images: Path | None  # None: the public demo set
    report: Path
    download: bool  # may DeepFace download missing weights?
    timeout: float  # seconds per image
    concurrency: int
    view: str | None = None  # show the demo video live on a page at this address


def choose_weights(
    settings: Settings,
    allow_download: bool,
    download: Callable[[Path], object] | None = None,
) -> tuple[Path, bool]:
    """The DEEPFACE_HOME the dataflow should use, and whether its weights are synthetic.

    Weights already in DEEPFACE_HOME are used as they are. Missing ones are downloaded
    (DeepFace's own sources) when allowed; when that is not allowed or fails, synthetic
    weights are used from the user's cache (made there if needed), never mixed into
    DEEPFACE_HOME.
    """
    download = download or (lambda _folder: download_in_child(settings))
    actions = check_weights(settings.models.weights_dir, settings.models.actions, ())
    missing = [s for s in actions if not s.usable]
    if not missing:
        synthetic = any(s.state is WeightState.SYNTHETIC for s in actions)
        say(
            f"weights: {'SYNTHETIC' if synthetic else 'real'} ones in {settings.models.weights_dir}"
        )
        return settings.models.deepface_home, synthetic
    names = ", ".join(s.path.name for s in missing)
    say(f"weights: real DeepFace weights are missing in {settings.models.weights_dir}: {names}")
    if allow_download:
        say("weights: downloading them with DeepFace (about 1.6 GB) ...")
        try:
            download(settings.models.weights_dir)
            say("weights: downloaded; using the real ones")
            return settings.models.deepface_home, False
        except WeightsDownloadError as error:
            say(f"weights: the download failed ({str(error).splitlines()[0][:200]})")
    else:
        say("weights: downloading is off (--no-download)")
    home = synthetic_deepface_home()
    folder = weights_dir_of(home)
    say(f"weights: SYNTHETIC weights in {folder} (made on first use: ~1.6 GB, a minute)")
    ensure_synthetic_weights(folder, settings.models.actions)
    say(f"weights: using SYNTHETIC weights from {folder}: {SYNTHETIC_WARNING}.")
    say(
        "weights: for real attributes, put DeepFace's weight files in "
        f"{settings.models.weights_dir} (see docs/models.md)."
    )
    return home, True


def download_in_child(settings: Settings) -> None:
    """`facestream models download` in a child process, so that TensorFlow's and DeepFace's
    start-up chatter stays out of the demo's output; WeightsDownloadError when it fails."""
    command = [sys.executable, "-m", "apps.cli", "models", "download"]
    env = child_environment(
        DEEPFACE_HOME=str(settings.models.deepface_home), TF_CPP_MIN_LOG_LEVEL="3"
    )
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()
        raise WeightsDownloadError(lines[-1].removeprefix("error: download failed: "))


def _load_images(options: DemoOptions) -> list[NamedImage]:
    if options.images is None:
        say("images: the public demo set (scikit-image photos, public domain / CC0) + a group")
        try:
            return demo_images()
        except FileNotFoundError as error:
            raise DemoError(str(error)) from None
    if not options.images.exists():
        raise DemoError(f"{options.images}: no such file or folder")
    images = folder_images(options.images)
    if not images:
        raise DemoError(f"{options.images}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    say(f"images: {len(images)} from {options.images}")
    return images


def _loader(image: NamedImage) -> Callable[[], NamedImage]:
    return lambda: image


def run(settings: Settings, options: DemoOptions) -> int:
    """The demo; its exit code (0 when every image got a result)."""
    say("facestream demo: broker -> dataflow -> gRPC server, all on this machine")
    live = _serve_view(options.view) if options.view is not None else None
    try:
        return _run(settings, options, live)
    finally:
        if live is not None:
            live.close()


def _serve_view(address: str) -> LiveView:
    """`--view`: the demo video's page, served before anything starts (so that a bad
    address fails at once)."""
    live = LiveView("the demo video", "file")
    try:
        notice = live.serve_at(address)
    except ValueError as error:
        raise DemoError(str(error)) from None
    for line in notice:
        say(line)
    return live


def _run(settings: Settings, options: DemoOptions, live: LiveView | None) -> int:
    images = _load_images(options)
    home, synthetic = choose_weights(settings, options.download)
    run_id = f"demo-{uuid.uuid4().hex[:8]}"
    attributes = settings.models.actions
    # Recognition needs the embedding model; the images are asked for their attributes
    # only, so that the results stay as readable as without it.
    env = {"FACESTREAM_ACTIONS": ",".join(dict.fromkeys((*attributes, EMBEDDING)))}
    asked = [a for a in attributes if a != EMBEDDING]
    with ready_system(settings, home, run_id, env) as (system, client):
        identify = system.supervise(
            lambda: enrol_demo_subject(client, images, synthetic),
            options.timeout + 30,
            "the enrolment",
        )
        ids = [f"{run_id}-{index}" for index in range(len(images))]
        started = time.monotonic()
        loaders = [_loader(image) for image in images]
        analyses = system.supervise(
            lambda: analyze_images(
                client, loaders, options.timeout, options.concurrency, ids, asked, identify
            ),
            options.timeout * len(images) + 30,
            "the results",
        )
        seconds = time.monotonic() - started
        video = system.supervise(
            lambda: stream_demo_video(
                client, options.report, f"{run_id}-video", options.timeout, identify, live
            ),
            options.timeout * 2 + 60,
            "the video's results",
        )
    entries = [
        ReportEntry(image.name, image.data, a.result, a.error, a.seconds)
        for image, a in zip(images, analyses, strict=True)
    ]
    summary = summarize(entries, seconds)
    _print_results(entries, synthetic or summary.synthetic_weights)
    say("")
    say("Summary")
    for line in summary.lines():
        say(f"  {line}")
    say(f"video: {video.name}")
    index = write_report(options.report, entries, summary, video)
    say(f"report: {index.resolve()}")
    return 0 if summary.answered == summary.images else 1


# The demo's video: about 10 s at 5 sampled frames a second.
VIDEO_SECONDS = 10.0
VIDEO_FPS = 5.0
VIDEO_ANIMATION = "video.webp"


# The subject the demo enrols: the astronaut of scikit-image's photo (Eileen Collins, NASA,
# public domain), under a fixed request id, so that a second demo enrols nothing twice.
DEMO_GALLERY = "demo"
DEMO_SUBJECT = "Eileen Collins"
DEMO_SUBJECT_PHOTO = "astronaut.png"
DEMO_ENROLMENT_ID = "demo-eileen-collins"


def enrol_demo_subject(
    client: AnalyzeClient, images: Sequence[NamedImage], synthetic: bool
) -> records_pb2.Identify | None:
    """Enrol the demo's subject from its photo among `images` into the demo gallery; the
    identify option that finds it, or None (and the reason said) when recognition cannot
    run here (the photo is not among the images, or the store or the model is missing)."""
    photo = next((image for image in images if image.name == DEMO_SUBJECT_PHOTO), None)
    if photo is None:
        say(f"recognition: off ({DEMO_SUBJECT_PHOTO} is not among the images)")
        return None
    try:
        reply = client.enroll(
            DEMO_GALLERY, DEMO_SUBJECT, [photo.data], request_id=DEMO_ENROLMENT_ID
        )
    except grpc.RpcError as error:
        say(f"recognition: off ({describe_rpc_error(error)})")
        return None
    (enrolled,) = reply.images
    state = "already enrolled" if enrolled.already else "enrolled"
    say(
        f"recognition: {DEMO_SUBJECT} {state} from {photo.name} into gallery {DEMO_GALLERY} "
        f"(face {enrolled.face_id}); every face below is identified against it"
    )
    if synthetic:
        say(
            "recognition: with SYNTHETIC weights different faces are close, so every face "
            "matches her: the names below show the mechanics, not who anyone is"
        )
    return identify_in(DEMO_GALLERY)


def stream_demo_video(
    client: AnalyzeClient,
    folder: Path,
    stream_id: str,
    timeout: float,
    identify: records_pb2.Identify | None = None,
    live: LiveView | None = None,
) -> VideoSection:
    """Compose the demo video into `folder`, send it as stream `stream_id` (each track
    identified with `identify`; shown on the `live` page, when given), and write its
    annotated frames there as an animated WebP; the report's section for it."""
    folder.mkdir(parents=True, exist_ok=True)
    composed = compose_demo_video(folder / "video.mp4", VIDEO_SECONDS, VIDEO_FPS)
    say(f"video: {composed.frame_count} frames composed from the public photos, sent as a stream")
    answers: list[FrameResult] = []

    def on_result(answer: FrameResult) -> None:
        answers.append(answer)
        if live is not None:
            live.offer(answer)

    with open_video_source(str(composed.path), VIDEO_FPS) as source:
        stream = VideoStream(
            client, source, stream_id, on_result, timeout=timeout, identify=identify
        )
        if live is not None:
            live.counts = stream.summary
            say(f"video: live at {live.url}")
        summary = stream.run()
    if live is not None:
        live.finish(summary.line())
    write_animation(
        [annotate_image(a.frame.image, a.result) for a in answers],
        folder / VIDEO_ANIMATION,
        VIDEO_FPS,
    )
    places = [(a.frame.sequence, a.frame.frame_index, a.frame.position_ms) for a in answers]
    return VideoSection(
        name=f"{composed.path.name}: {summary.line()}",
        animation_file=VIDEO_ANIMATION,
        frames=frame_rows([a.result for a in answers], places),
    )


def _print_results(entries: list[ReportEntry], synthetic: bool) -> None:
    rows: list[tuple[str, ...]] = []
    for entry in entries:
        if entry.result is None:
            rows.append((*error_row(entry.name, entry.error), "-"))
            continue
        identities = [identity_text(face) for face in entry.result.faces] or ["-"]
        rows.extend(
            (*row, identity)
            for row, identity in zip(result_rows(entry.name, entry.result), identities, strict=True)
        )
    say("")
    say(f"Results ({SYNTHETIC_WARNING})" if synthetic else "Results")
    say(format_table(rows, (*COLUMNS, "identity")))


def main(settings: Settings, options: DemoOptions) -> int:
    """Run the demo; Ctrl-C or SIGTERM stops it (and its children) with exit code 130."""
    stop_on_signals()
    try:
        return run(settings, options)
    except KeyboardInterrupt:
        say("interrupted: every child process was stopped")
        return 130
    except (DemoError, LocalSystemError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
