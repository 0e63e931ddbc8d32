"""Thread priorities in a dataflow process: Bytewax's threads run below the computing ones
(facestream/thread_priority.py). Linux only: elsewhere threads have no niceness of their
own."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import bytewax.run
import cv2
import pytest

import facestream.analyzer
from di.environment import bytewax_worker_threads
from facestream.thread_priority import BOOKKEEPING_NICENESS, lower_this_thread
from tests.photos import SINGLE_FACE

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="per-thread niceness is Linux's")

T = TypeVar("T")


def niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def in_thread(work: Callable[[], T]) -> T:
    """`work()` run on a new thread: its result, or its exception raised here."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(work).result(timeout=300)


def test_a_lowered_thread_runs_below_the_process_and_its_new_threads_inherit_it():
    start = niceness()

    def lowered() -> tuple[bool, int, int, bool]:
        changed = lower_this_thread()
        child = in_thread(niceness)  # as Bytewax's workers, started after
        return changed, niceness(), child, lower_this_thread()

    changed, own, child, again = in_thread(lowered)
    assert (changed, own, child) == (start < BOOKKEEPING_NICENESS, BOOKKEEPING_NICENESS, own)
    assert again is False  # already that low: nothing to do
    assert niceness() == start  # the rest of the process is untouched


@pytest.mark.model_process
@pytest.mark.models
def test_detection_keeps_the_builders_priority_when_a_lowered_thread_asks(
    analyzer, public_photos, monkeypatch
):
    seen: list[int] = []
    real = facestream.analyzer.find_faces

    def find_faces(*args, **kwargs):
        seen.append(niceness())
        return real(*args, **kwargs)

    monkeypatch.setattr(facestream.analyzer, "find_faces", find_faces)
    image = cv2.imread(str(public_photos / SINGLE_FACE[0]))
    builder = niceness()  # the analyzer fixture was built on this thread

    def lowered() -> list:
        lower_this_thread()
        return analyzer.find_faces(image, "opencv", 0)

    faces = in_thread(lowered)
    assert seen == [builder]
    boxes = [(f.x, f.y, f.w, f.h) for f in analyzer.find_faces(image, "opencv", 0)]
    assert [(f.x, f.y, f.w, f.h) for f in faces] == boxes
    assert faces, "the photo has a face"


@pytest.mark.parametrize(
    ("args", "environ", "threads"),
    [
        (["dataflow", "-w", "4"], {}, 4),
        (["dataflow", "-w2", "-r", "/tmp/recovery"], {}, 2),
        (["dataflow", "--workers-per-process=3", "-i", "0", "-a", "h0:1;h1:1"], {}, 3),
        (["dataflow"], {"BYTEWAX_WORKERS_PER_PROCESS": "2"}, 2),
        (["dataflow", "-w", "1"], {"BYTEWAX_WORKERS_PER_PROCESS": "4"}, 1),  # -w wins
        (["dataflow"], {}, 1),
        (["dataflow", "-w", "many"], {}, 1),
    ],
)
def test_the_worker_threads_are_read_as_bytewax_reads_them(args, environ, threads):
    assert bytewax_worker_threads([bytewax.run.__file__, *args], environ) == threads


def test_a_process_not_started_by_bytewax_run_has_one_worker_thread():
    assert bytewax_worker_threads(["/usr/bin/pytest", "-w", "4"], {}) == 1
    assert bytewax_worker_threads([], {"BYTEWAX_WORKERS_PER_PROCESS": "4"}) == 1
