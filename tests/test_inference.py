"""The process's inference executor: worker threads' faces meet in shared batches."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from facestream.analyzer import FaceAttributes
from facestream.inference import InferenceExecutor

TIMEOUT = 30


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


class HeldModel:
    """A stand-in for FaceAnalyzer.describe: each face's "age" is its first pixel, so every
    caller can check it got its own faces back. The first call is held until released, so
    that other threads queue behind it; a face with pixel -1 makes its batch fail."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, tuple[str, ...]]] = []
        self.release = threading.Event()
        self.entered = threading.Event()

    def describe(self, faces, actions):
        self.entered.set()
        if not self.batches:
            assert self.release.wait(TIMEOUT)
        self.batches.append((len(faces), tuple(actions)))
        if (faces[:, 0, 0, 0] == -1).any():
            raise RuntimeError("model exploded")
        return [FaceAttributes(float(face[0, 0, 0]), {}, {}) for face in faces]


def faces(*values: float) -> np.ndarray:
    batch = np.zeros((len(values), 2, 2, 3), dtype=np.float32)
    batch[:, 0, 0, 0] = values
    return batch


def ages(described) -> list[float]:
    return [attributes.age for attributes in described]


def test_the_faces_of_threads_that_wait_share_the_next_batch():
    model = HeldModel()
    executor = InferenceExecutor(model.describe, batch_size=8)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(executor.describe, faces(1, 2), ("age",))
        assert model.entered.wait(TIMEOUT), "the first batch did not start"
        others = [
            pool.submit(executor.describe, faces(10 * i, 10 * i + 1), ("age",)) for i in (1, 2, 3)
        ]
        wait_for(lambda: executor.waiting == 6, "three threads' faces to queue")
        model.release.set()
        assert ages(first.result(TIMEOUT)) == [1, 2]
        for i, other in zip((1, 2, 3), others, strict=True):
            assert ages(other.result(TIMEOUT)) == [10 * i, 10 * i + 1]
    assert model.batches == [(2, ("age",)), (6, ("age",))]


def test_batches_hold_one_set_of_actions_and_at_most_batch_size_faces():
    model = HeldModel()
    executor = InferenceExecutor(model.describe, batch_size=4)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(executor.describe, faces(0), ("age",))
        assert model.entered.wait(TIMEOUT), "the first batch did not start"
        large = pool.submit(executor.describe, faces(*range(1, 7)), ("age",))
        wait_for(lambda: executor.waiting == 6, "the large call to queue")
        emotion = pool.submit(executor.describe, faces(50), ("emotion",))
        small = pool.submit(executor.describe, faces(60), ("age",))
        wait_for(lambda: executor.waiting == 8, "every call to queue")
        model.release.set()
        # Split over two batches, in order, and given back whole.
        assert ages(large.result(TIMEOUT)) == [1, 2, 3, 4, 5, 6]
        assert ages(emotion.result(TIMEOUT)) == [50]
        assert ages(small.result(TIMEOUT)) == [60]
        assert ages(first.result(TIMEOUT)) == [0]
    assert model.batches == [(1, ("age",)), (4, ("age",)), (3, ("age",)), (1, ("emotion",))]


def test_a_failing_batch_fails_its_callers_and_the_executor_goes_on():
    model = HeldModel()
    model.release.set()
    executor = InferenceExecutor(model.describe, batch_size=8)
    with pytest.raises(RuntimeError, match="model exploded"):
        executor.describe(faces(1, -1), ("age",))
    assert ages(executor.describe(faces(3), ("age",))) == [3]
    assert executor.describe(faces(), ("age",)) == []


def test_batch_sizes_are_reported():
    model = HeldModel()
    model.release.set()
    sizes: list[int] = []
    executor = InferenceExecutor(model.describe, batch_size=2, on_batch=sizes.append)
    assert ages(executor.describe(faces(1, 2, 3), ("age",))) == [1, 2, 3]
    assert sizes == [2, 1]


@pytest.mark.model_process
@pytest.mark.models
def test_threads_through_the_executor_get_what_the_analyzer_gives_each_alone(analyzer):
    rng = np.random.default_rng(5)
    batches = [rng.random((count, 224, 224, 3), dtype=np.float32) for count in (3, 1, 5, 2)]
    alone = [analyzer.describe(batch, analyzer.actions) for batch in batches]
    executor = InferenceExecutor(analyzer.describe, batch_size=8)
    with ThreadPoolExecutor(len(batches)) as pool:
        together = list(pool.map(lambda b: executor.describe(b, analyzer.actions), batches))
    for mine, theirs in zip(alone, together, strict=True):
        assert [a.dominant for a in mine] == [t.dominant for t in theirs]
        for a, t in zip(mine, theirs, strict=True):
            assert abs(a.age - t.age) < 1e-3
            for action, scores in a.scores.items():
                for label, value in scores.items():
                    assert abs(value - t.scores[action][label]) < 1e-3
