"""The `facestream` command.

An application: it reads settings (through `di`) and turns them into explicit arguments
for the core's functions, the server and the demo.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TypeAlias

from apps.broker import EmbeddedBroker
from apps.launch import Kafka, kafka_with_topics
from di import load_settings
from di.settings import (
    ClientProcessSettings,
    ProcessSettings,
    ServerProcessSettings,
    Settings,
    SettingsError,
)
from facestream.kafka_admin import BrokerError
from facestream.models import (
    ACTIONS,
    DEFAULT_SEED,
    DETECTOR_BACKENDS,
    SYNTHETIC_WARNING,
    WeightsDownloadError,
    WeightState,
    check_weights,
    download_weights,
    synthesize_weights,
)

# TensorFlow's (and absl's), DeepFace's and OpenCV's own chatter, off unless the user set
# these variables: a command's output is its own lines.
QUIET_LIBRARIES = {
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "DEEPFACE_LOG_LEVEL": str(logging.WARNING),
    # FFmpeg's own lines about a video it cannot read (OpenCV reads this when it first
    # opens one): `facestream video` says what went wrong itself.
    "OPENCV_FFMPEG_LOGLEVEL": "-8",
}
# Said after writing or finding synthetic weights.
# `--view` without an address: this machine only, on a free port.
DEFAULT_VIEW_ADDRESS = "127.0.0.1:0"
SYNTHETIC_NOTICE = f"!! {SYNTHETIC_WARNING} (same architecture and cost as DeepFace's own)"
# What a command runs, given the settings and its parsed arguments; returns the exit code.
Handler: TypeAlias = Callable[[Any, argparse.Namespace], int]
# What `add_subparsers` returns (argparse has no public name for it).
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _comma_list(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(raw: str) -> list[str]:
        chosen = [part.strip() for part in raw.split(",") if part.strip()]
        unknown = [c for c in chosen if c not in allowed]
        if unknown or not chosen:
            raise argparse.ArgumentTypeError(
                f"{raw!r}: expected a comma-separated subset of {', '.join(allowed)}"
            )
        return chosen

    return parse


def _wait_for_stop_signal(broker: EmbeddedBroker) -> int:
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        print(f"{signal.Signals(signum).name} received, stopping the broker", flush=True)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not stop.wait(0.5):
        if not broker.running():
            print(
                f"error: the embedded broker exited unexpectedly:\n{broker.log_tail()}",
                file=sys.stderr,
            )
            return 1
    return 0


def _announce_configured_kafka(kafka: Kafka) -> None:
    if kafka.broker is None:  # said before waiting for it: it may take a while to answer
        print(f"Using Kafka at {kafka.bootstrap}: the embedded broker is not started.")


def run_broker(settings: Settings) -> int:
    """Start the embedded broker with facestream's topics and keep it up until SIGINT/SIGTERM.

    When FACESTREAM_KAFKA_BOOTSTRAP names a Kafka, start nothing: create missing topics there.
    """
    names = ", ".join(t.name for t in settings.topics)
    port = settings.kafka.embedded_broker_port
    with kafka_with_topics(settings, port, _announce_configured_kafka) as kafka:
        if kafka.broker is None:
            created = ", ".join(kafka.created_topics) or "none"
            print(f"Topics ready ({names}); created now: {created}.")
            return 0
        broker = kafka.broker
        print(
            f"Embedded broker ready on {broker.bootstrap} (pid {broker.pid}); topics: {names} "
            f"({settings.kafka.partitions} partitions, records up to "
            f"{settings.kafka_max_message_bytes} bytes). In-memory: data is lost on stop. "
            "Ctrl-C to stop.",
            flush=True,
        )
        code = _wait_for_stop_signal(broker)
    print("Embedded broker stopped.", flush=True)
    return code


def run_models_synth(settings: Settings, actions: Sequence[str], seed: int) -> int:
    """Write synthetic weights for `actions` into the weights folder."""
    print(
        f"Writing synthetic weights for {', '.join(actions)} to {settings.models.weights_dir} ...",
        flush=True,
    )
    for path in synthesize_weights(settings.models.weights_dir, actions, seed):
        print(f"  wrote {path.name} ({path.stat().st_size / 1e6:.0f} MB, synthetic)")
    print(SYNTHETIC_NOTICE)
    print("For real predictions, replace them with DeepFace's real weight files.")
    return 0


def run_models_check(settings: Settings, actions: Sequence[str], detectors: Sequence[str]) -> int:
    """Print the state of every weight file; exit 1 when any is missing or unreadable."""
    report = check_weights(settings.models.weights_dir, actions, detectors)
    width = max(len(s.component) for s in report)
    print(f"Weights folder: {settings.models.weights_dir}")
    for status in report:
        print(f"  {status.component:<{width}}  {status.state.value:<10}  {status.path}")
    if any(s.state is WeightState.SYNTHETIC for s in report):
        print(SYNTHETIC_NOTICE)
    bad = [s for s in report if not s.usable]
    if bad:
        print(
            f"{len(bad)} file(s) missing or unreadable. Put DeepFace's weight files in "
            f"{settings.models.weights_dir} (DeepFace downloads them there on first use when "
            "online)."
        )
        if any(s.component.startswith("action") for s in bad):
            print("For tests and benchmarks, `facestream models synth` writes synthetic ones.")
        return 1
    return 0


def run_models_download(
    settings: Settings, actions: Sequence[str], detectors: Sequence[str]
) -> int:
    """Download DeepFace's real weights for `actions` and the files of `detectors` into the
    weights folder: the only place facestream downloads anything."""
    print(
        f"Downloading DeepFace weights for {', '.join((*actions, *detectors))} to "
        f"{settings.models.weights_dir} ..."
    )
    try:
        fetched = download_weights(settings.models.weights_dir, actions, detectors)
    except WeightsDownloadError as error:
        print(f"error: download failed: {error}", file=sys.stderr)
        return 1
    print(f"Downloaded {len(fetched)} file(s); the others were already there.")
    return run_models_check(settings, actions, detectors)


def run_recovery_init(folder: Path, partitions: int) -> int:
    """Create Bytewax's recovery store in `folder` once; a second call changes nothing."""
    existing = sorted(folder.glob("part-*.sqlite3")) if folder.is_dir() else []
    if existing:
        if len(existing) != partitions:
            print(
                f"error: {folder} already holds {len(existing)} recovery partitions, not "
                f"{partitions}; use a new folder to change the count.",
                file=sys.stderr,
            )
            return 1
        print(f"Recovery store {folder} already holds {partitions} partitions; left as is.")
        return 0
    from bytewax.recovery import init_db_dir

    folder.mkdir(parents=True, exist_ok=True)
    init_db_dir(folder, partitions)
    print(f"Recovery store created in {folder} with {partitions} partitions.")
    return 0


def run_health(settings: ClientProcessSettings, address: str | None, timeout: float) -> int:
    """Exit 0 when the server at `address` (default FACESTREAM_GRPC_ADDRESS) is SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2

    from facestream.client import AnalyzeClient

    address = address or settings.server.grpc_address
    with AnalyzeClient(address, ca_cert=settings.tls.tls_ca) as client:
        try:
            status = client.health(timeout=timeout)
        except grpc.RpcError as error:
            print(f"{address}: no answer ({error.code().name})")
            return 1
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
    print(f"{address}: {name}")
    return 0 if status == health_pb2.HealthCheckResponse.SERVING else 1


def run_demo(settings: Settings, args: argparse.Namespace) -> int:
    """The whole system on this machine; see apps.demo."""
    from apps import demo

    options = demo.DemoOptions(
        images=args.images,
        report=args.report,
        download=not args.no_download,
        timeout=args.timeout,
        concurrency=args.concurrency,
        view=args.view,
    )
    return demo.main(settings, options)


def run_models_calibrate(settings: Settings, folder: Path) -> int:
    """Rebuild int8's calibration set from the faces in the photos of `folder`."""
    from facestream.calibration import (
        CalibrationError,
        calibration_crops,
        calibration_folder,
        read_photos,
        write_calibration_set,
    )

    if not folder.is_dir():
        print(f"error: {folder} is not a folder of photos", file=sys.stderr)
        return 2
    target = calibration_folder(settings.analysis.engine_cache_dir)
    print(f"Finding faces in the photos of {folder} ...", flush=True)
    crops = calibration_crops(read_photos(folder), settings.models.detector_backend)
    try:
        calibration = write_calibration_set(crops, target)
    except CalibrationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        f"Calibration set: {len(calibration.files())} face crops (mirrored included) in "
        f"{target}. Processes with FACESTREAM_PRECISION=int8 quantize on this set when they "
        "next start (the models quantized on the previous set are not used)."
    )
    return 0


def run_models(settings: Settings, args: argparse.Namespace) -> int:
    """`facestream models synth|check|download|calibrate`; check and download default to
    the configured actions and detector."""
    if args.models_command == "synth":
        return run_models_synth(settings, args.actions, args.seed)
    if args.models_command == "calibrate":
        return run_models_calibrate(settings, args.folder)
    actions = args.actions or settings.models.actions
    detectors = args.detectors or (settings.models.detector_backend,)
    if args.models_command == "download":
        return run_models_download(settings, actions, detectors)
    return run_models_check(settings, actions, detectors)


# The gRPC commands import their code when they run, so that the others do not load gRPC.


def run_serve(settings: ServerProcessSettings) -> int:
    """The gRPC AnalyzeService, until SIGTERM/SIGINT."""
    from di.server_root import run_server

    return run_server(settings)


def run_submit_command(settings: ClientProcessSettings, args: argparse.Namespace) -> int:
    """`facestream submit`; see apps.client_commands."""
    from apps.client_commands import SubmitOptions, run_submit

    options = SubmitOptions(
        paths=args.paths,
        wait=args.wait,
        as_json=args.json,
        timeout=args.timeout,
        concurrency=args.concurrency,
        actions=args.actions,
        embeddings=not args.no_embeddings,
    )
    return run_submit(settings, options)


def run_watch_command(settings: ClientProcessSettings, args: argparse.Namespace) -> int:
    """`facestream watch`; see apps.client_commands."""
    from apps.client_commands import run_watch

    return run_watch(settings, args.request_ids, args.json, not args.no_embeddings)


def run_video_command(settings: ClientProcessSettings, args: argparse.Namespace) -> int:
    """`facestream video`; see apps.video and apps.client_commands."""
    from apps.client_commands import VideoOptions, run_video

    options = VideoOptions(
        source=args.source,
        fps=args.fps,
        stream_id=args.stream_id or f"video-{uuid.uuid4().hex[:12]}",
        start=args.start,
        duration=args.duration,
        as_json=args.json,
        out=args.out,
        window=args.window,
        timeout=args.timeout,
        embeddings=not args.no_embeddings,
        gallery=args.gallery or "",
        view=args.view,
        keep_view=args.keep_view,
    )
    return run_video(settings, options)


def run_gallery_command(settings: ClientProcessSettings, args: argparse.Namespace) -> int:
    """`facestream gallery enroll / list / forget`; see apps.gallery_commands."""
    from apps.gallery_commands import run_enroll, run_forget, run_list

    if args.gallery_command == "enroll":
        return run_enroll(
            settings, args.gallery, args.subject, args.photos, args.request_id, args.json
        )
    if args.gallery_command == "list":
        return run_list(settings, args.gallery, args.json)
    return run_forget(settings, args.gallery, args.subject or "", args.face)


def run_identify_command(settings: ClientProcessSettings, args: argparse.Namespace) -> int:
    """`facestream identify`; see apps.gallery_commands."""
    from apps.gallery_commands import run_identify

    return run_identify(settings, args.photos, args.gallery, args.top_k, args.threshold, args.json)


def run_verify_command(settings: ClientProcessSettings, args: argparse.Namespace) -> int:
    """`facestream verify`; see apps.gallery_commands."""
    from apps.gallery_commands import run_verify

    subject = tuple(args.subject.split("/", 1)) if args.subject else None
    if (args.other is None) == (subject is None):
        print("error: give another photo or --subject GALLERY/SUBJECT", file=sys.stderr)
        return 2
    return run_verify(settings, args.photo, args.other, subject, args.threshold, args.json)


def run_up_command(settings: Settings, args: argparse.Namespace) -> int:
    """`facestream up`; see apps.up."""
    from apps.up import run_up

    return run_up(settings, download=not args.no_download)


def run_hash_token() -> int:
    """Read a bearer token from standard input (never an argument: process lists and shell
    history would keep it) and print its SHA-256, as the credentials file stores it."""
    from grpc_server.principals import hash_token

    token = sys.stdin.readline().strip()
    if not token or any(c.isspace() for c in token):
        print("error: give one token without spaces on standard input", file=sys.stderr)
        return 2
    print(hash_token(token))
    return 0


# Each command's handler, by the command's name in build_parser.
@dataclass(frozen=True)
class Command:
    """A subcommand: the settings it reads (the sections it validates) and what it runs."""

    settings: type[ProcessSettings]
    run: Handler


class NoSettings(ProcessSettings):
    """For the commands that read no settings."""


COMMANDS: dict[str, Command] = {
    "broker": Command(Settings, lambda settings, _args: run_broker(settings)),
    "models": Command(Settings, run_models),
    "demo": Command(Settings, run_demo),
    "health": Command(
        ClientProcessSettings,
        lambda settings, args: run_health(settings, args.address, args.timeout),
    ),
    "recovery-init": Command(
        NoSettings, lambda _settings, args: run_recovery_init(args.folder, args.partitions)
    ),
    "serve": Command(ServerProcessSettings, lambda settings, _args: run_serve(settings)),
    "auth": Command(NoSettings, lambda _settings, _args: run_hash_token()),
    "submit": Command(ClientProcessSettings, run_submit_command),
    "watch": Command(ClientProcessSettings, run_watch_command),
    "video": Command(ClientProcessSettings, run_video_command),
    "gallery": Command(ClientProcessSettings, run_gallery_command),
    "identify": Command(ClientProcessSettings, run_identify_command),
    "verify": Command(ClientProcessSettings, run_verify_command),
    "up": Command(Settings, run_up_command),
}


# The parser, one function a command, in the order `--help` lists them.


def _add_broker(commands: Subcommands) -> None:
    commands.add_parser(
        "broker",
        help="run the embedded Kafka-compatible broker with facestream's topics "
        "(or create the topics on FACESTREAM_KAFKA_BOOTSTRAP)",
    )


def _add_models(commands: Subcommands) -> None:
    models = commands.add_parser(
        "models", help="DeepFace weights: check, download or synthesize; int8 calibration"
    )
    model_commands = models.add_subparsers(dest="models_command", required=True)
    synth = model_commands.add_parser(
        "synth", help="write SYNTHETIC weights (meaningless predictions) for tests and benchmarks"
    )
    synth.add_argument(
        "--actions",
        type=_comma_list(ACTIONS),
        default=list(ACTIONS),
        help=f"comma-separated subset of {','.join(ACTIONS)} (default: all)",
    )
    synth.add_argument("--seed", type=int, default=DEFAULT_SEED)
    # check and download: what to look at, by default what the settings configure.
    configured_actions = argparse.ArgumentParser(add_help=False)
    configured_actions.add_argument(
        "--actions",
        type=_comma_list(ACTIONS),
        default=None,
        help="comma-separated actions (default: FACESTREAM_ACTIONS)",
    )
    configured_actions.add_argument(
        "--detectors",
        type=_comma_list(DETECTOR_BACKENDS),
        default=None,
        help="comma-separated detectors (default: FACESTREAM_DETECTOR_BACKEND)",
    )
    model_commands.add_parser(
        "check", parents=[configured_actions], help="list which weights are present"
    )
    model_commands.add_parser(
        "download",
        parents=[configured_actions],
        help="download DeepFace's real weights and detector files (needs internet)",
    )
    calibrate = model_commands.add_parser(
        "calibrate",
        help="build int8's calibration set (FACESTREAM_PRECISION=int8) from the faces in a "
        "folder of your own photos",
    )
    calibrate.add_argument("folder", type=Path, help="a folder of photos with faces")


def _weights_choice() -> argparse.ArgumentParser:
    """The option of the commands that start the local system: may weights be downloaded?"""
    choice = argparse.ArgumentParser(add_help=False)
    choice.add_argument(
        "--no-download",
        action="store_true",
        help="never download weights: use synthetic ones when the real ones are missing",
    )
    return choice


def _add_demo(commands: Subcommands) -> None:
    demo = commands.add_parser(
        "demo",
        parents=[_weights_choice()],
        help="run the whole system (broker, dataflow, gRPC server) on demo images and "
        "write a report",
    )
    demo.add_argument(
        "--images",
        type=Path,
        default=None,
        help="a folder (or file) of your images; default: the public demo set",
    )
    demo.add_argument(
        "--report",
        type=Path,
        default=Path("facestream-demo-report"),
        help="folder for the report (default: ./facestream-demo-report)",
    )
    demo.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait per image (default 300)"
    )
    demo.add_argument("--concurrency", type=int, default=4, help="images in flight (default 4)")
    _add_view(demo, "the demo video")


def _add_health(commands: Subcommands) -> None:
    health = commands.add_parser(
        "health", help="exit 0 when the gRPC server at FACESTREAM_GRPC_ADDRESS is SERVING"
    )
    health.add_argument(
        "--address", default=None, help="host:port (default: FACESTREAM_GRPC_ADDRESS)"
    )
    health.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")


def _add_recovery_init(commands: Subcommands) -> None:
    recovery = commands.add_parser(
        "recovery-init",
        help="create the dataflow's recovery store once (python -m bytewax.recovery, "
        "but safe to repeat)",
    )
    recovery.add_argument("folder", type=Path)
    recovery.add_argument("partitions", type=int, help="at least the total number of workers")


def _add_serve(commands: Subcommands) -> None:
    commands.add_parser("serve", help="run the gRPC AnalyzeService (same as python -m grpc_server)")


def _add_auth(commands: Subcommands) -> None:
    auth = commands.add_parser("auth", help="credentials of the gRPC server")
    auth.add_subparsers(dest="auth_command", required=True).add_parser(
        "hash-token",
        help="print the SHA-256 of the token read from standard input, for FACESTREAM_AUTH_FILE",
    )


def _add_no_embeddings(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--no-embeddings",
        action="store_true",
        help="leave the faces' embeddings (base64, 16 KiB each) out of JSON lines",
    )


def _add_submit(commands: Subcommands) -> None:
    submit = commands.add_parser(
        "submit", help="send image files or folders to the AnalyzeService (FACESTREAM_GRPC_ADDRESS)"
    )
    submit.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="image file or folder")
    submit.add_argument("--wait", action="store_true", help="wait for and print the results")
    submit.add_argument("--json", action="store_true", help="print JSON lines, not a table")
    submit.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait per call (default 300)"
    )
    submit.add_argument(
        "--concurrency", type=int, default=4, help="images in flight with --wait (default 4)"
    )
    submit.add_argument(
        "--actions",
        type=_comma_list(ACTIONS),
        default=[],
        help=f"comma-separated subset of {','.join(ACTIONS)} (default: the server's)",
    )
    _add_no_embeddings(submit)


def _add_watch(commands: Subcommands) -> None:
    watch = commands.add_parser(
        "watch", help="print results as they arrive: for the request ids given, or all"
    )
    watch.add_argument("request_ids", nargs="*", metavar="REQUEST_ID")
    watch.add_argument("--json", action="store_true", help="print JSON lines")
    _add_no_embeddings(watch)


def _add_video(commands: Subcommands) -> None:
    video = commands.add_parser(
        "video",
        help="send a video file, an rtsp/http(s) stream or a camera frame by frame and print "
        "each frame's result as it comes",
    )
    video.add_argument(
        "source",
        metavar="SOURCE",
        help="a video file, an rtsp:// or http(s):// URL, or a camera index",
    )
    video.add_argument(
        "--fps", type=float, default=5.0, help="frames sampled per second of video (default 5)"
    )
    video.add_argument(
        "--stream-id", default="", help="the stream's id (default: a new one, printed)"
    )
    video.add_argument(
        "--start", type=float, default=0.0, help="seconds into a video file to begin at"
    )
    video.add_argument(
        "--duration", type=float, default=None, help="seconds of video to send (default: all)"
    )
    video.add_argument("--json", action="store_true", help="one JSON line per frame")
    _add_no_embeddings(video)
    video.add_argument(
        "--out", type=Path, default=None, help="write the annotated frames to FILE (.mp4, .avi)"
    )
    video.add_argument(
        "--window", type=int, default=8, help="frames sent and not yet answered (default 8)"
    )
    video.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="give up after this many seconds without a result (default 300)",
    )
    video.add_argument(
        "--gallery", help="identify each face (each track) against this gallery of yours"
    )
    _add_view(video, "the stream")
    video.add_argument(
        "--keep-view",
        action="store_true",
        help="with --view: keep serving the page after the stream ended, until Ctrl-C",
    )


def _add_view(command: argparse.ArgumentParser, what: str) -> None:
    command.add_argument(
        "--view",
        nargs="?",
        const=DEFAULT_VIEW_ADDRESS,
        default=None,
        metavar="ADDRESS",
        help=f"watch {what} live in a browser: serve a page at ADDRESS (HOST:PORT, PORT or "
        f"HOST; default {DEFAULT_VIEW_ADDRESS}, a free port) and print its URL",
    )


def _subject(raw: str) -> str:
    if "/" not in raw:
        raise argparse.ArgumentTypeError("a subject is named GALLERY/SUBJECT")
    return raw


def _add_gallery(commands: Subcommands) -> None:
    gallery = commands.add_parser(
        "gallery", help="enrol faces into galleries, list them, forget them (recognition)"
    )
    gallery_commands = gallery.add_subparsers(dest="gallery_command", required=True)
    enroll = gallery_commands.add_parser(
        "enroll", help="enrol a subject's face from each photo (one face each)"
    )
    enroll.add_argument("gallery")
    enroll.add_argument("subject")
    enroll.add_argument("photos", nargs="+", type=Path, metavar="PHOTO")
    enroll.add_argument(
        "--request-id", default="", help="retry with the same id to enrol nothing twice"
    )
    enroll.add_argument("--json", action="store_true", help="print the reply as JSON")
    listing = gallery_commands.add_parser(
        "list", help="your galleries, or one gallery's subjects, with their face counts"
    )
    listing.add_argument("gallery", nargs="?")
    listing.add_argument("--json", action="store_true", help="print JSON lines")
    forget = gallery_commands.add_parser(
        "forget", help="erase a gallery, a subject, or one face (--face ID)"
    )
    forget.add_argument("gallery")
    forget.add_argument("subject", nargs="?")
    forget.add_argument("--face", type=int, default=0, metavar="ID", help="one enrolled face")


def _add_identify(commands: Subcommands) -> None:
    identify = commands.add_parser(
        "identify", help="each face of each photo and whom it resembles in a gallery"
    )
    identify.add_argument("photos", nargs="+", type=Path, metavar="PHOTO")
    identify.add_argument("--gallery", required=True)
    identify.add_argument("--top-k", type=int, default=1, help="subjects per face (default 1)")
    identify.add_argument(
        "--threshold", type=float, help="cosine distance for a match (default 0.68)"
    )
    identify.add_argument("--json", action="store_true", help="print JSON lines")


def _add_verify(commands: Subcommands) -> None:
    verify = commands.add_parser(
        "verify", help="whether two photos, or a photo and an enrolled subject, show one person"
    )
    verify.add_argument("photo", type=Path)
    verify.add_argument("other", type=Path, nargs="?", help="the other photo")
    verify.add_argument("--subject", type=_subject, metavar="GALLERY/SUBJECT")
    verify.add_argument(
        "--threshold", type=float, help="cosine distance for a match (default 0.68)"
    )
    verify.add_argument("--json", action="store_true", help="print the reply as JSON")


def _add_up(commands: Subcommands) -> None:
    commands.add_parser(
        "up",
        parents=[_weights_choice()],
        help="run the whole local system (embedded broker unless FACESTREAM_KAFKA_BOOTSTRAP, "
        "dataflow, gRPC server) until Ctrl-C",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facestream",
        description="Streaming face analysis. Settings come from FACESTREAM_* variables "
        "(docs/configuration.md).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for add_command in (
        _add_broker,
        _add_models,
        _add_demo,
        _add_health,
        _add_recovery_init,
        _add_serve,
        _add_auth,
        _add_submit,
        _add_watch,
        _add_video,
        _add_gallery,
        _add_identify,
        _add_verify,
        _add_up,
    ):
        add_command(commands)
    return parser


def quiet_libraries() -> None:
    """Silence TensorFlow's and DeepFace's start-up messages in this process and its
    children (before either is imported), unless the user chose otherwise."""
    for name, value in QUIET_LIBRARIES.items():
        os.environ.setdefault(name, value)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_libraries()
    command = COMMANDS[args.command]
    try:
        settings = load_settings(command.settings)
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        return command.run(settings, args)
    except BrokerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
