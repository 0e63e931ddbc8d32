"""The live view's cost (`facestream video --view`): the composed video streamed as a file
(every sampled frame, as fast as the system answers) through one fast-mode system of the
cameras row's shape, in turn with no page and with the view served and a headless Chromium
watching it, `--repeat` passes each: frames answered/s both ways, their ratio, the client
process's CPU seconds per frame (drawing and serving are in the client) and Chromium's
(its processes' CPU over the pass: it competes for the same cores)."""

from __future__ import annotations

import statistics
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from apps.demo_video import compose_demo_video
from apps.headless_chromium import chromium
from apps.live_view import LiveView
from bench.cameras import CAMERA_DATAFLOW
from bench.load import LoadRun
from bench.sections import Inputs, say
from bench.systems import cpu_seconds, facestream_system, interleaved
from bench.video import VIDEO_FPS, stream_pass
from facestream.client import AnalyzeClient

WINDOW = 8  # `facestream video`'s default
# Passes long enough that a pass's start and end weigh little: 150 frames at 5 fps.
VIEW_VIDEO_SECONDS = 30.0
# How long a page may take to show the stream's end once it ended.
PAGE_END_TIMEOUT = 60


def descendants(pid: int) -> list[int]:
    """The processes below `pid` (children, theirs, ...), as /proc shows them now."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # ended meanwhile
    found, frontier = [], [pid]
    while frontier:
        below = [child for child, parent in parents.items() if parent in frontier]
        found += below
        frontier = below
    return found


def watched_pass(
    client: AnalyzeClient, video: Path, folder: Path, browser_cpu: list[float]
) -> LoadRun:
    """One pass with the view served and a headless Chromium showing it from before the
    first frame to the stream's end (the browser's start is not in the pass's time); the
    browser's CPU seconds per frame in the pass are appended to `browser_cpu`."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    view = LiveView(video.name, "file")
    try:
        url = view.serve()
        with chromium(folder) as browser:
            browser.get(url)
            status = browser.find_element(By.ID, "status")
            WebDriverWait(browser, PAGE_END_TIMEOUT, 0.05).until(
                lambda _b: status.get_attribute("data-frame") is not None
            )  # the page follows the view's events
            processes = descendants(browser.service.process.pid)
            cpu = sum(cpu_seconds(pid) for pid in processes)
            run = stream_pass(client, str(video), WINDOW, view=view)
            ended = browser.find_element(By.ID, "ended")
            WebDriverWait(browser, PAGE_END_TIMEOUT, 0.05).until(lambda _b: ended.is_displayed())
            spent = sum(cpu_seconds(pid) for pid in processes) - cpu
            browser_cpu.append(spent / run.images)
        return run
    finally:
        view.close()


def timed(pass_: partial[LoadRun]) -> tuple[LoadRun, float]:
    """A pass and the CPU seconds this process spent in it."""
    cpu = time.process_time()
    run = pass_()
    return run, time.process_time() - cpu


def measure_view(inputs: Inputs) -> dict[str, Any]:
    """Frames answered/s of the composed video with and without a browser watching the
    live view, side by side in one run."""
    settings, repeat = inputs.settings, inputs.args.repeat
    home = settings.models.deepface_home
    cpu: dict[str, list[float]] = {"without_view": [], "with_browser": []}
    browser_cpu: list[float] = []
    with (
        tempfile.TemporaryDirectory(prefix="facestream-bench-view-") as workdir,
        facestream_system(settings, home, CAMERA_DATAFLOW, "fast") as (system, _service),
        AnalyzeClient(system.address) as client,
    ):
        video = compose_demo_video(Path(workdir) / "view.mp4", VIEW_VIDEO_SECONDS, VIDEO_FPS).path
        say("bench: view, a warm-up pass")
        system.supervise(partial(stream_pass, client, str(video), WINDOW), 600, "a video pass")

        def measured(name: str, pass_: partial[LoadRun]) -> LoadRun:
            run, seconds = system.supervise(partial(timed, pass_), 600, "a video pass")
            cpu[name].append(seconds / run.images)
            return run

        runs = interleaved(
            {
                "without_view": partial(
                    measured, "without_view", partial(stream_pass, client, str(video), WINDOW)
                ),
                "with_browser": partial(
                    measured,
                    "with_browser",
                    partial(watched_pass, client, video, Path(workdir), browser_cpu),
                ),
            },
            repeat,
        )
    rates = {
        name: statistics.median(run.images / run.seconds for run in done)
        for name, done in runs.items()
    }
    return {
        "mode": "fast",
        "dataflow": CAMERA_DATAFLOW[0],
        "frames": runs["without_view"][0].images,
        "frames_per_s": rates,
        "passes_frames_per_s": {
            name: [run.images / run.seconds for run in done] for name, done in runs.items()
        },
        "client_cpu_s_per_frame": {name: statistics.median(s) for name, s in cpu.items()},
        "browser_cpu_s_per_frame": statistics.median(browser_cpu),
        "with_browser_vs_without": rates["with_browser"] / rates["without_view"],
    }
