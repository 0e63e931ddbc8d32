"""Overlap, measured: detecting one image while the models analyse the faces of another,
each on its own share of the cores, against taking turns on threads that span all of them
(what FaceAnalyzer does: detection and forward passes hold one lock).

In this process, exact mode (DeepFace's detection at full size), the bench photos, batches of
FACESTREAM_BATCH_SIZE faces, both ways interleaved (A B A B ...), medians. The two must give
the same attributes (dominant labels equal, probabilities within 1e-3 points: the thread
counts change only the order of the sums).

Usage: python -m bench.overlap [--repeat N]   (writes bench/results/overlap.json)
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import threading
import time
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from bench import RESULTS
from bench.machine import describe_machine
from bench.pipeline_parts import in_process_steps
from bench.workload import bench_images, mode_settings
from facestream.analyzer import FaceAnalyzer, FaceAttributes
from facestream.faces import find_faces, model_input

Attributes = list[FaceAttributes]


def taking_turns(
    analyzer: FaceAnalyzer, pictures: Sequence[np.ndarray], batch: int, threads: int
) -> tuple[float, Attributes]:
    """Detect, then analyse each full batch, one after the other on `threads` OpenCV
    threads (the analyzer's engine has its own count): faces/s and the attributes."""
    cv2.setNumThreads(threads)
    started = time.perf_counter()
    pending: list[np.ndarray] = []
    described: Attributes = []
    for picture in pictures:
        for face in analyzer.find_faces(picture, "opencv", 0):
            pending.append(model_input(face.crop))
        while len(pending) >= batch:
            described += analyzer.describe(np.stack(pending[:batch]), analyzer.actions)
            pending = pending[batch:]
    if pending:
        described += analyzer.describe(np.stack(pending), analyzer.actions)
    return len(described) / (time.perf_counter() - started), described


def overlapped(
    analyzer: FaceAnalyzer, pictures: Sequence[np.ndarray], batch: int, threads: int
) -> tuple[float, Attributes]:
    """One thread detects (on `threads` OpenCV threads) while this one analyses the faces
    found so far, up to `batch` at a time: faces/s and the attributes."""
    cv2.setNumThreads(threads)
    found: queue.Queue[np.ndarray | None] = queue.Queue()

    def detect() -> None:
        # Only this thread detects: the analyzer's lock, which would make the two take
        # turns, is bypassed on purpose.
        for picture in pictures:
            for face in find_faces(picture, "opencv", 0):
                found.put(model_input(face.crop))
        found.put(None)

    started = time.perf_counter()
    detector = threading.Thread(target=detect, name="detection")
    detector.start()
    described: Attributes = []
    done = False
    while not done:
        faces = [found.get()]
        while len(faces) < batch and not found.empty():
            faces.append(found.get())
        if faces[-1] is None:
            faces.pop()
            done = True
        if faces:
            described += analyzer.describe(np.stack(faces), analyzer.actions)
    detector.join()
    return len(described) / (time.perf_counter() - started), described


def largest_difference(a: Attributes, b: Attributes) -> tuple[bool, float]:
    """(dominant labels equal on every face, the largest probability difference in points)."""
    same = len(a) == len(b) and all(x.dominant == y.dominant for x, y in zip(a, b, strict=True))
    worst = max(
        abs(value - y.scores[action][label])
        for x, y in zip(a, b, strict=True)
        for action, scores in x.scores.items()
        for label, value in scores.items()
    )
    return same, worst


def measure_overlap(repeat: int) -> dict[str, Any]:
    """Taking turns against overlapping, interleaved, in this process: the figures."""
    cores = len(os.sched_getaffinity(0))
    share = max(1, cores // 2)
    _name, images = bench_images()
    pictures = [cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) for data in images]
    settings = mode_settings("exact")
    batch = settings.analysis.batch_size
    shared, _logger, _limits = in_process_steps(settings)
    split_settings = settings.model_copy(
        update={"analysis": settings.analysis.model_copy(update={"engine_threads": share})}
    )
    split, _logger, _limits = in_process_steps(split_settings)
    runs: dict[str, list[float]] = {"turns": [], "overlap": []}
    taking_turns(shared, pictures[:1], batch, cores)  # warm both
    overlapped(split, pictures[:1], batch, share)
    for _ in range(repeat):
        rate, turns = taking_turns(shared, pictures, batch, cores)
        runs["turns"].append(rate)
        rate, overlap = overlapped(split, pictures, batch, share)
        runs["overlap"].append(rate)
    same, worst = largest_difference(turns, overlap)
    report = {
        "machine": describe_machine(),
        "faces": len(turns),
        "images": len(pictures),
        "batch_size": batch,
        "repeat": repeat,
        "turns": {"faces_per_s": statistics.median(runs["turns"]), "threads": cores},
        "overlap": {"faces_per_s": statistics.median(runs["overlap"]), "threads_each": share},
        "same_dominant_labels": same,
        "max_probability_difference_pp": worst,
    }
    report["overlap_vs_turns"] = report["overlap"]["faces_per_s"] / report["turns"]["faces_per_s"]
    return report


def overlap_rows(report: dict[str, Any]) -> list[str]:
    """The figures of measure_overlap as markdown table rows (measure, value)."""
    return [
        f"| taking turns, {report['turns']['threads']} threads each (facestream), "
        f"{report['faces']} faces | {report['turns']['faces_per_s']:.2f} faces/s |",
        f"| overlapped, {report['overlap']['threads_each']} thread(s) each | "
        f"{report['overlap']['faces_per_s']:.2f} faces/s ({report['overlap_vs_turns']:.2f}x); "
        f"same dominant labels: {'yes' if report['same_dominant_labels'] else 'NO'}, largest "
        f"probability difference {report['max_probability_difference_pp']:.2e} points |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    report = measure_overlap(args.repeat)
    out = RESULTS / "overlap.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"Overlap ({report['machine']}; {report['images']} photos, exact mode, batch "
        f"{report['batch_size']}, median of {args.repeat}, interleaved):\n\n"
        "| detection and analysis | faces/s |\n|---|---|\n" + "\n".join(overlap_rows(report))
    )


if __name__ == "__main__":
    main()
