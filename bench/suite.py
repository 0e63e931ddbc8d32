"""`make bench`: facestream against the ceiling and against DeepFace's own gRPC server, side
by side in one run, on the same images, weights and load generator.

The run is made of sections (SECTIONS, in order; `--only` chooses some), each saved into
bench/results/latest.json as soon as it is measured; one that fails is reported with its
error and the rest still run (bench/sections.py). They measure:

- headline: DeepFace's gRPC server (deepface 0.0.103) on 127.0.0.1, its Analyze RPC, as 1
  process and as 2 processes (one per core) with client-side round robin, against
  facestream's Analyze end to end (gRPC -> Kafka -> Bytewax -> results -> reply), `-w 1`,
  exact mode (detection at full size, as the peer does) and fast mode, all running at once
  and measured in turn, A B A B, so that drift hits all of them; every image's face count
  checked against the peer's; latency p50/p99 at half the strongest peer's saturated load;
  each side's CPU seconds per run (the load generator's included); peak memory of each
  process, the dataflows' first start (converting and quantizing) apart from steady state;
- crops: the photos' face crops with detector `skip` on every side;
- video: the demo's composed video sampled at 5 fps, the strongest peer called once per
  frame against facestream fed by `VideoStream` (tracking on and off, fast), then a live
  5 fps camera; video_stages: seconds per frame in detection and analysis, in process;
- shapes: facestream's shapes (exact): `-w 1`, `-w 2`, 2 processes x `-w 1`, `-w 4`, peak
  RSS, and the exact ceiling (the dataflow's steps in one process) in the same rotation;
- cameras: live 5 fps MJPEG cameras, each with its own client process, into one `-w 1`
  system, fast and exact mode with tracking, 1, 2, 3, 4, 6, ... cameras until a step is not
  held (p99 capture to result under 1 s, at most 1% of frames dropped); each mode's memory
  at its first start and in steady state;
- view: the composed video streamed through one fast-mode system with and without a headless
  Chromium watching `facestream video --view`'s page, in turn: frames answered/s both ways;
- recognition: identification against 10,000 faces; recognition_scale: 10,000 and 100,000
  faces through the store's index, against DeepFace's search (exact and ann) and find;
- stages, ceiling, engines, embedding, pipeline_parts, overlap: in-process measures, each in
  a child process of its own; ingest: `python -m bench.submit_throughput`; di: an operator's
  cost to reach its singletons.

Usage: python -m bench.suite [--repeat N] [--rounds N] [--concurrency C]
       [--only SECTION[,SECTION...]] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import RESULTS
from bench.cameras import measure_cameras
from bench.machine import cpu_flags, describe_machine
from bench.measures import (
    measure_ceiling,
    measure_crops,
    measure_di,
    measure_embedding,
    measure_engines,
    measure_headline,
    measure_ingest,
    measure_overlap,
    measure_pipeline_parts,
    measure_recognition,
    measure_recognition_scale,
    measure_shapes,
    measure_stages,
    measure_video,
    measure_video_stages,
)
from bench.sections import Inputs, Run, Section, prepare_weights, say
from bench.systems import RunningSystems
from bench.tables import table
from bench.targets import unmet
from bench.view_cost import measure_view
from bench.workload import MODES, bench_images
from di import load_settings
from facestream.engines import resolve_precision
from facestream.models import (
    ACTIONS,
    ATTRIBUTE_ACTIONS,
    WeightState,
    check_weights,
)
from facestream.shared_trunk import VGG_ATTRIBUTES

# Every section, in the order a full run measures them. The systems' sections come first:
# the in-process ones run after the systems have stopped, each in a child process.
SECTIONS: tuple[Section, ...] = (
    Section("headline", measure_headline, ATTRIBUTE_ACTIONS, systems=True),
    Section("crops", measure_crops, ATTRIBUTE_ACTIONS, systems=True),
    Section("video", measure_video, ATTRIBUTE_ACTIONS, systems=True),
    Section("video_stages", measure_video_stages, ATTRIBUTE_ACTIONS),
    Section("shapes", measure_shapes, ATTRIBUTE_ACTIONS),
    Section("cameras", measure_cameras, ATTRIBUTE_ACTIONS),
    Section("view", measure_view, ATTRIBUTE_ACTIONS),
    Section("stages", measure_stages, ATTRIBUTE_ACTIONS),
    Section("ceiling", measure_ceiling, ATTRIBUTE_ACTIONS),
    Section("engines", measure_engines, VGG_ATTRIBUTES),
    Section("embedding", measure_embedding, ACTIONS),
    Section("recognition", measure_recognition, ACTIONS),
    Section("recognition_scale", measure_recognition_scale, ACTIONS),
    Section("ingest", measure_ingest),
    Section("di", measure_di),
    Section("pipeline_parts", measure_pipeline_parts, ATTRIBUTE_ACTIONS),
    Section("overlap", measure_overlap, ATTRIBUTE_ACTIONS),
)
SECTION_NAMES = tuple(section.name for section in SECTIONS)


def chosen_sections(only: str | None) -> list[Section]:
    """The sections `--only` names (comma-separated), in the run's order; every one without.
    ValueError naming an unknown one and the sections there are."""
    if not only:
        return list(SECTIONS)
    names = [name.strip() for name in only.split(",") if name.strip()]
    unknown = [name for name in names if name not in SECTION_NAMES]
    if unknown or not names:
        raise ValueError(
            f"unknown section {', '.join(unknown) or repr(only)}; the sections: "
            + ", ".join(SECTION_NAMES)
        )
    return [section for section in SECTIONS if section.name in names]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.suite", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    # Three passes per saturated run: with one, the ramp-up and the drain at the ends of a
    # run (a first call alone, the last ones in small batches) weigh more than saturation.
    parser.add_argument("--rounds", type=int, default=3, help="passes over the images per run")
    parser.add_argument("--concurrency", type=int, default=8, help="calls in flight")
    # p99 over fewer calls is the slowest one or two: A B A B runs of this many calls each.
    parser.add_argument(
        "--half-load-calls", type=int, default=50, help="calls per latency run at half load"
    )
    # DeepFace's server gives wrong answers and errors with 2 worker threads (its detector
    # is shared and not thread-safe; docs/design.md), so its best setting is 1 per process.
    parser.add_argument("--peer-workers", type=int, default=1)
    parser.add_argument(
        "--only",
        metavar="SECTION[,SECTION...]",
        help="measure these sections alone (and what they need started): "
        + ", ".join(SECTION_NAMES),
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="folder of latest.json (bench/results)"
    )
    parser.add_argument(
        "--fail-in",
        metavar="SECTION",
        choices=SECTION_NAMES,
        help="a fail point: make this section raise, to see the run report it and go on",
    )
    args = parser.parse_args(argv)
    try:
        args.sections = chosen_sections(args.only)
    except ValueError as error:
        parser.error(str(error))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen sections; 1 when one failed or was skipped, else 0."""
    args = parse_args(argv)
    sections: list[Section] = args.sections
    settings = load_settings()
    skipped = prepare_weights(settings.models.weights_dir, sections)
    image_set, images = bench_images()
    report: dict[str, Any] = {
        "machine": describe_machine(),
        "cpu_flags": cpu_flags(),
        "engine": settings.analysis.engine,
        "precision": {
            mode: resolve_precision(settings.analysis.precision, settings.analysis.engine, mode)
            for mode in MODES
        },
        "images": image_set,
        "image_count": len(images),
        "actions": list(settings.models.actions),
        "repeat": args.repeat,
        "rounds": args.rounds,
        "concurrency": args.concurrency,
        "batch_size": settings.analysis.batch_size,
        "chosen": [section.name for section in sections],
    }
    inputs = Inputs(settings, images, args, report)
    run = Run(inputs, args.out, args.fail_in)
    started = time.monotonic()
    systems = RunningSystems(inputs)
    try:
        for index, section in enumerate(sections):
            run.section(section, systems, skipped.get(section.name, ()))
            if not any(later.systems for later in sections[index + 1 :]):
                systems.close()  # nothing else runs beside the in-process sections
    finally:
        systems.close()
    report["synthetic_weights"] = any(
        status.state is WeightState.SYNTHETIC
        for status in check_weights(settings.models.weights_dir, settings.models.actions, ())
    )
    report["seconds"] = time.monotonic() - started
    run.save()
    print(table(report))
    missed = unmet(report["ratios"], report["sections"])
    if missed:
        say(f"bench: {len(missed)} target(s) not met")
    if run.failed:
        say(
            f"bench: section(s) not measured: {', '.join(run.failed)} (their errors are above "
            f"and in {args.out / 'latest.json'})"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
