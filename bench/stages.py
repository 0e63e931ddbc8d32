"""Where each side spends its time, in this process: seconds per picture in detection and in
analysis, for DeepFace (its `extract_faces`, then its `analyze` minus that detection) and for
facestream (its detection, then its batched analysis of the pictures' faces), on the same
pictures. The video row measures frames; the headline measures photos, and reports per face.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from di import Settings


def stage_seconds(
    pictures: Sequence[bytes],
    settings: Settings,
    analysed: float = 1.0,
    repeat: int = 1,
    with_peer: bool = True,
) -> dict[str, dict[str, float]]:
    """Seconds per picture in detection and in analysis on both sides (the peer's only
    `with_peer`: it has no modes), facestream in the settings' mode (its detection size and
    border); with tracking, facestream's analysis runs on the `analysed` share of the faces
    only ("facestream_tracked")."""
    from deepface import DeepFace

    from bench.pipeline_parts import in_process_steps
    from facestream.faces import model_input

    decoded = [cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) for data in pictures]
    actions = list(settings.models.actions)
    detector = settings.models.detector_backend
    side = settings.analysis.detection_max_side

    def timed(run: Callable[[], object]) -> float:
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        return statistics.median(times) / len(decoded)

    def peer_detect() -> None:
        for picture in decoded:
            DeepFace.extract_faces(picture, detector_backend=detector, enforce_detection=False)

    def peer_analyze() -> None:
        for picture in decoded:
            DeepFace.analyze(
                picture, actions, detector_backend=detector, enforce_detection=False, silent=True
            )

    sides: dict[str, dict[str, float]] = {}
    if with_peer:
        peer_analyze()  # DeepFace loads its models on the first call
        peer_detect_s, peer_total_s = timed(peer_detect), timed(peer_analyze)
        sides["peer"] = {"detect_s": peer_detect_s, "analyze_s": peer_total_s - peer_detect_s}
    analyzer, _logger, _limits = in_process_steps(settings)
    faces = [face for picture in decoded for face in analyzer.find_faces(picture, detector, side)]
    batch = settings.analysis.batch_size
    inputs = np.stack([model_input(face.crop) for face in faces])

    def ours_detect() -> None:
        for picture in decoded:
            analyzer.find_faces(picture, detector, side)

    def ours_analyze() -> None:
        for start in range(0, len(inputs), batch):
            analyzer.describe(inputs[start : start + batch], tuple(actions))

    ours_analyze()  # warm
    detect_s, analyze_s = timed(ours_detect), timed(ours_analyze)
    return {
        **sides,
        "facestream_untracked": {"detect_s": detect_s, "analyze_s": analyze_s},
        "facestream_tracked": {"detect_s": detect_s, "analyze_s": analyze_s * analysed},
        "frames": {"count": len(decoded), "faces": len(faces)},
    }
