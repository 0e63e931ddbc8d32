"""Benchmark of the dataflow's heavy steps, in process (no Kafka), side by side in one run:

- detection of the 14 Mpx photo on the full image vs downscaled (FACESTREAM_DETECTION_MAX_SIDE);
- faces/s of extract_faces + analyze_faces over the photos with faces, batch size 1 vs
  FACESTREAM_BATCH_SIZE.

Medians over repeated runs. Uses the weights in DEEPFACE_HOME (synthetic ones cost the same).
Usage: python -m bench.pipeline_parts [PHOTO_DIR] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from apps.image_sources import SHARED_FACES, demo_images, skimage_data_dir
from apps.launch import PROJECT_ROOT
from bench import RESULTS
from dataflow.items import FaceJob, ImageJob
from dataflow.steps import analyze_faces, extract_faces, parse_request
from di import Settings, build_container, load_settings
from facestream.analyzer import FaceAnalyzer, deepface_model
from facestream.faces import Face
from facestream.images import decode_image
from facestream.kafka_records import image_submitted
from facestream.requests import RequestLimits
from facestream.shared_trunk import VGG_ATTRIBUTES

LARGE_PHOTO = "large_single_3061x4600.jpg"


def median_seconds(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def in_process_steps(settings: Settings) -> tuple[FaceAnalyzer, logging.Logger, RequestLimits]:
    """What the dataflow's steps get when the flow is built, for running them in process."""
    container = build_container(settings)
    return container[FaceAnalyzer], container[logging.Logger], container[RequestLimits]


@dataclass(frozen=True)
class DetectedFaces:
    """Pictures decoded, their faces as the dataflow finds them, and the faces' model inputs."""

    pictures: list[np.ndarray]
    faces: list[Face]
    inputs: np.ndarray  # (faces, 224, 224, 3)


def detected_faces(
    analyzer: FaceAnalyzer, settings: Settings, pictures: Sequence[bytes]
) -> DetectedFaces:
    """The pictures' faces, found with the settings' detector and detection size."""
    from facestream.faces import model_input

    decoded = [cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) for data in pictures]
    detector = settings.models.detector_backend
    side = settings.analysis.detection_max_side
    faces = [face for picture in decoded for face in analyzer.find_faces(picture, detector, side)]
    return DetectedFaces(decoded, faces, np.stack([model_input(face.crop) for face in faces]))


def submissions(images: Sequence[bytes]) -> list[ImageJob]:
    """The images as the dataflow's first step gives them on (parsed requests-topic records)."""
    from bytewax.connectors.kafka import KafkaSourceMessage

    return [
        parse_request(
            KafkaSourceMessage(key=None, value=image_submitted(f"b{i}", data).SerializeToString())
        )
        for i, data in enumerate(images)
    ]


def extract_and_analyze(
    jobs: Sequence[ImageJob],
    analyzer: FaceAnalyzer,
    limits: RequestLimits,
    logger: logging.Logger,
    batch_size: int,
    detection_max_side: int,
) -> int:
    """The dataflow's extraction and batched analysis steps over `jobs`, in this process,
    with no Kafka around them; the number of faces analysed."""
    faces = [
        face
        for job in jobs
        for face in extract_faces(
            job, analyzer, limits, logger, detection_max_side=detection_max_side
        )
        if isinstance(face, FaceJob)
    ]
    analyze_faces(faces, analyzer.describe, batch_size, logger)
    return len(faces)


def photo_set(folder: Path) -> tuple[bytes, list[bytes]]:
    """A 14 Mpx photo and photos with faces: from `folder` (the shared photos) when it is
    there, else the public demo set and its astronaut upscaled to 3072x4608."""
    if folder.is_dir():
        photos = [
            path.read_bytes()
            for path in sorted(folder.glob("*.*"))
            if path.suffix.lower() in (".jpg", ".png") and not path.name.startswith("noface")
        ]
        return (folder / LARGE_PHOTO).read_bytes(), photos
    astronaut = cv2.imread(str(skimage_data_dir() / "astronaut.png"), cv2.IMREAD_COLOR)
    ok, large = cv2.imencode(".jpg", cv2.resize(astronaut, (3072, 4608)))
    assert ok
    return large.tobytes(), [image.data for image in demo_images()]


def measure_parts(settings: Settings, photos_dir: Path, repeat: int) -> dict[str, Any]:
    """Detection of the 14 Mpx photo (full and downscaled), extraction + analysis per batch
    size, and the shared trunk against DeepFace's three models: the figures, in this
    process."""
    analyzer, logger, limits = in_process_steps(settings)
    report: dict[str, Any] = {"synthetic_weights": analyzer.synthetic_weights, "repeat": repeat}

    large_photo, photos = photo_set(photos_dir)
    large = decode_image(
        large_photo, settings.requests.max_image_bytes, settings.requests.max_pixels
    )
    side = settings.analysis.detection_max_side
    report["detect_14mpx_full_s"] = median_seconds(
        lambda: analyzer.find_faces(large, "opencv", 0), repeat
    )
    report["detect_14mpx_downscaled_s"] = median_seconds(
        lambda: analyzer.find_faces(large, "opencv", side), repeat
    )
    report["detection_max_side"] = side

    jobs = submissions(photos)
    faces = extract_and_analyze(jobs, analyzer, limits, logger, settings.analysis.batch_size, side)

    def pipeline(batch_size: int) -> None:
        extract_and_analyze(jobs, analyzer, limits, logger, batch_size, side)

    report["batch_sizes"] = sorted({1, settings.analysis.batch_size, 16})
    for batch_size in report["batch_sizes"]:
        seconds = median_seconds(lambda b=batch_size: pipeline(b), repeat)
        report[f"faces_per_s_batch_{batch_size}"] = faces / seconds
    report["faces"] = faces
    report["images"] = len(jobs)

    # The shared VGG-Face trunk against DeepFace's age, gender and race models one by one,
    # on one batch of the configured size.
    batch = np.random.default_rng(0).random((settings.analysis.batch_size, 224, 224, 3), np.float32)
    models = {action: deepface_model(action) for action in VGG_ATTRIBUTES}
    separate = median_seconds(
        lambda: [models[action].predict(batch) for action in VGG_ATTRIBUTES], repeat
    )
    shared = median_seconds(lambda: analyzer.predict(batch, VGG_ATTRIBUTES), repeat)
    report["shared_trunk"] = bool(analyzer.shared_actions)
    report["batch_size"] = settings.analysis.batch_size
    report["engine"] = settings.analysis.engine
    report["age_gender_race_separate_s_per_face"] = separate / len(batch)
    report["age_gender_race_shared_s_per_face"] = shared / len(batch)
    return report


def parts_rows(report: dict[str, Any]) -> list[str]:
    """The figures of measure_parts as markdown table rows (measure, value)."""
    full, scaled = report["detect_14mpx_full_s"], report["detect_14mpx_downscaled_s"]
    b1 = report["faces_per_s_batch_1"]
    separate = report["age_gender_race_separate_s_per_face"]
    shared = report["age_gender_race_shared_s_per_face"]
    return [
        f"| detect 14 Mpx photo, full image | {full:.2f} s |",
        f"| detect 14 Mpx photo, downscaled to {report['detection_max_side']} px | "
        f"{scaled:.2f} s ({full / scaled:.1f}x faster) |",
        *(
            f"| extract + analyze, batch {size} | {report[f'faces_per_s_batch_{size}']:.2f} "
            f"faces/s ({report[f'faces_per_s_batch_{size}'] / b1:.2f}x batch 1) |"
            for size in report["batch_sizes"]
        ),
        f"| age + gender + race, batch {report['batch_size']}: three models (TensorFlow) / "
        f"shared trunk ({report['engine']}) | {separate:.3f} / {shared:.3f} s per face "
        f"({separate / shared:.2f}x; shared: {report['shared_trunk']}) |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="?", type=Path, default=SHARED_FACES)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    report = measure_parts(load_settings(), args.photos, args.repeat)
    out = RESULTS / "pipeline_parts.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"{report['images']} photos, {report['faces']} faces, median of {args.repeat}, "
        f"synthetic weights: {report['synthetic_weights']}\n\n| measure | value |\n|---|---|"
    )
    print("\n".join(parts_rows(report)))
    print(f"written to {out.relative_to(PROJECT_ROOT)}")


if __name__ == "__main__":
    main()
