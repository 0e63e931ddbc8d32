"""What the embedding action costs, in this process, side by side in one run:

- facestream's analysis of the photos' faces (batches of FACESTREAM_BATCH_SIZE) with the
  four attributes, and with the four attributes and the embedding, in turn (A B A B): the
  embedding is one more head on the shared VGG-Face trunk (target: <= 5% more per face);
- the peer doing what DeepFace's users do today for both (deepface#1288, #1489): per
  image, `DeepFace.represent(model_name="VGG-Face")` then `DeepFace.analyze`, each detecting
  again, against facestream's detection and analysis with the embedding, per face.

Usage: python -m bench.embedding [--repeat N] (prints JSON); `make bench` runs it as a row.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from di import Settings, child_environment
from facestream.engines import cpu_supports_bf16, resolve_precision
from facestream.models import ACTIONS, ATTRIBUTE_ACTIONS

PAIRS_PER_REPEAT = 5


def _per_face(run: Callable[[], object], faces: int) -> float:
    started = time.perf_counter()
    run()
    return (time.perf_counter() - started) / faces


def embedding_cost(
    pictures: Sequence[bytes], mode: Mapping[str, str], repeat: int = 3
) -> dict[str, Any]:
    """Seconds per face: facestream's analysis without and with the embedding (interleaved,
    medians of 5 x `repeat` pairs), then detection plus analysis with the embedding against
    the peer's represent + analyze per picture, and against facestream's without it.
    `mode` is the settings (bench.workload.MODES) on top of this process's environment; the
    actions are this function's."""
    from deepface import DeepFace

    from bench.pipeline_parts import detected_faces, in_process_steps

    settings = Settings.from_env(child_environment(**mode, FACESTREAM_ACTIONS=",".join(ACTIONS)))
    analyzer, _logger, _limits = in_process_steps(settings)
    # The attributes alone on an analyzer without the embedding: on one with it, the shared
    # trunk's forward pass computes every head, asked for or not.
    attributes_only = Settings.from_env(
        child_environment(**mode, FACESTREAM_ACTIONS=",".join(ATTRIBUTE_ACTIONS))
    )
    without, _logger, _limits = in_process_steps(attributes_only)
    detected = detected_faces(analyzer, settings, pictures)
    decoded, faces, inputs = detected.pictures, detected.faces, detected.inputs
    detector = settings.models.detector_backend
    side = settings.analysis.detection_max_side
    batch = settings.analysis.batch_size

    def analyze(actions: Sequence[str]) -> Callable[[], None]:
        analyzing = analyzer if "embedding" in actions else without

        def run() -> None:
            for start in range(0, len(inputs), batch):
                analyzing.describe(inputs[start : start + batch], tuple(actions))

        return run

    def end_to_end(actions: Sequence[str]) -> Callable[[], None]:
        def run() -> None:
            for picture in decoded:
                analyzer.find_faces(picture, detector, side)
            analyze(actions)()

        return run

    def peer() -> None:
        for picture in decoded:
            DeepFace.represent(
                picture, model_name="VGG-Face", detector_backend=detector, enforce_detection=False
            )
            DeepFace.analyze(
                picture,
                list(ATTRIBUTE_ACTIONS),
                detector_backend=detector,
                enforce_detection=False,
                silent=True,
            )

    for warm in (analyze(ATTRIBUTE_ACTIONS), analyze(ACTIONS), peer):
        warm()  # traces graphs and loads DeepFace's own models
    timed: dict[str, list[float]] = {
        "attributes": [],
        "with_embedding": [],
        "peer": [],
        "ours": [],
        "ours_attributes": [],
    }
    # A pass over the faces is a few seconds and the difference sought is a few percent:
    # many short pairs, A B A B, so that drift hits both alike.
    for _ in range(PAIRS_PER_REPEAT * repeat):
        timed["attributes"].append(_per_face(analyze(ATTRIBUTE_ACTIONS), len(faces)))
        timed["with_embedding"].append(_per_face(analyze(ACTIONS), len(faces)))
    for _ in range(repeat):
        timed["peer"].append(_per_face(peer, len(faces)))
        timed["ours"].append(_per_face(end_to_end(ACTIONS), len(faces)))
        timed["ours_attributes"].append(_per_face(end_to_end(ATTRIBUTE_ACTIONS), len(faces)))
    median = {name: statistics.median(values) for name, values in timed.items()}
    reference = [found.embedding for found in analyzer.describe(inputs, ("embedding",))]
    return {
        "engine": settings.analysis.engine,
        "precision": resolve_precision(
            settings.analysis.precision, settings.analysis.engine, settings.analysis.mode
        ),
        "shared": ",".join(analyzer.shared_actions),
        "shared_without": ",".join(without.shared_actions),
        "faces": len(faces),
        "s_per_face": median,
        "embedding_extra": median["with_embedding"] / median["attributes"] - 1,
        "embedding_extra_end_to_end": median["ours"] / median["ours_attributes"] - 1,
        "vs_peer": median["peer"] / median["ours"],
        "agreement": {
            precision: agreement(inputs, reference, mode, precision)
            for precision in (("bf16", "int8") if cpu_supports_bf16() else ("int8",))
        },
    }


def agreement(
    inputs: np.ndarray, reference: Sequence[np.ndarray], mode: Mapping[str, str], precision: str
) -> dict[str, float]:
    """Cosine similarity of each face's embedding on OpenVINO in `precision` with its
    `reference` (fp32) embedding: the lowest and the median."""
    from bench.pipeline_parts import in_process_steps
    from facestream.embeddings import cosine_similarity

    settings = Settings.from_env(
        child_environment(
            **mode,
            FACESTREAM_ACTIONS=",".join(ACTIONS),
            FACESTREAM_ENGINE="openvino",
            FACESTREAM_PRECISION=precision,
        )
    )
    analyzer, _logger, _limits = in_process_steps(settings)
    similarities = [
        cosine_similarity(found.embedding, expected)
        for found, expected in zip(
            analyzer.describe(inputs, ("embedding",)), reference, strict=True
        )
    ]
    return {"min": min(similarities), "median": statistics.median(similarities)}


def main() -> None:
    from bench.workload import MODES, bench_images

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    _name, images = bench_images()
    print(json.dumps(embedding_cost(images, MODES["exact"], args.repeat), indent=2))


if __name__ == "__main__":
    main()
