"""One inference executor per process: the batcher every worker thread hands its faces to.

Bytewax gives each worker thread the faces that reach it, so with `-w 4` each thread would
batch a quarter of the faces and call the engine on its own: four small batches at once,
each engine call trying to use every core, so that they slow each other down
(docs/dataflow.md). Here the threads queue their faces instead, and one thread runs the engine on
batches filled across all of them, one batch at a time, with all the process's cores.

Batches fill while the engine is busy: whatever the threads queued during one batch makes the
next one (up to `batch_size` faces asking for the same actions), so a face waits at most for
the batch in progress, and a lone worker's faces are never held back for others.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from facestream.analyzer import FaceAttributes

# A batch of model inputs and the actions asked -> each face's attributes (FaceAnalyzer).
Describe = Callable[[np.ndarray, Sequence[str]], list[FaceAttributes]]


@dataclass(eq=False)  # a request is itself: found in the queue by identity, not by its faces
class _Request:
    """One thread's faces: the part already batched, and its outcome once every part is done."""

    faces: np.ndarray
    actions: tuple[str, ...]
    taken: int = 0
    parts: list[list[FaceAttributes]] = field(default_factory=list)
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def waiting(self) -> int:
        return len(self.faces) - self.taken


class InferenceExecutor:
    """`describe(faces, actions)` for any number of threads, run by one thread in batches of
    up to `batch_size` faces gathered across callers (`on_batch(faces)` is told each batch's
    size). A failed batch fails the calls whose faces were in it, and only those."""

    def __init__(
        self,
        describe: Describe,
        batch_size: int,
        on_batch: Callable[[int], None] = lambda _faces: None,
    ) -> None:
        self._describe = describe
        self._batch_size = batch_size
        self._on_batch = on_batch
        self._queue: deque[_Request] = deque()
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self._thread.start()

    @property
    def waiting(self) -> int:
        """Faces queued and not yet in a batch."""
        with self._ready:
            return sum(request.waiting for request in self._queue)

    def describe(self, faces: np.ndarray, actions: Sequence[str]) -> list[FaceAttributes]:
        """Each face's attributes, as `FaceAnalyzer.describe`; raises what its batch raised."""
        request = _Request(faces, tuple(actions))
        if not len(faces):
            return []
        with self._ready:
            self._queue.append(request)
            self._ready.notify()
        request.done.wait()
        if request.error is not None:
            raise request.error
        return [attributes for part in request.parts for attributes in part]

    def _next_batch(self) -> list[tuple[_Request, int, int]]:
        """The oldest request's actions, filled first come first served: (request, start,
        end) slices, `batch_size` faces at most. Called holding the lock."""
        actions = self._queue[0].actions
        batch, room = [], self._batch_size
        for request in list(self._queue):
            if room == 0:
                break
            if request.actions != actions:
                continue
            count = min(room, request.waiting)
            batch.append((request, request.taken, request.taken + count))
            request.taken += count
            room -= count
            if request.waiting == 0:
                self._queue.remove(request)
        return batch

    def _run(self) -> None:
        while True:
            with self._ready:
                self._ready.wait_for(lambda: bool(self._queue))
                batch = self._next_batch()
            faces = np.concatenate([request.faces[start:end] for request, start, end in batch])
            self._on_batch(len(faces))
            try:
                described = self._describe(faces, batch[0][0].actions)
            except Exception as error:  # reaches the callers of this batch, not the thread
                for request, _start, _end in batch:
                    request.error = error
                    self._finish(request)
                continue
            offset = 0
            for request, start, end in batch:
                request.parts.append(described[offset : offset + end - start])
                offset += end - start
                if request.error is None and request.taken == len(request.faces):
                    self._finish(request)

    def _finish(self, request: _Request) -> None:
        # A request split over batches ends when its last part is done, failed or not.
        with self._ready:
            if request in self._queue:
                self._queue.remove(request)
        request.taken = len(request.faces)
        request.done.set()
