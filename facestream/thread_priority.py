"""Thread priorities in a dataflow process: the threads that compute (detection, the
models' forward passes and their thread pools) keep the process's priority; the calling
thread, and every thread it starts afterwards (Bytewax's workers), run below them.

Why: Bytewax's threads wake about a thousand times a second each while they wait (its run
loop parks for 1 ms at a time), and on a small machine every wake-up takes a core from a
forward pass that is split over all of them, so the pass waits for its slowest thread.
Measured on 2 cores: three threads waking every millisecond made the VGG pass 22-80%
slower per face; `-w 4` ran at 0.63-0.80x `-w 1` with them at the same priority, 0.98x
below it (docs/performance.md). The composition root lowers them only in a process
of more than one worker thread: a lone worker is itself on the critical path.
"""

from __future__ import annotations

import os
import sys
import threading

# Below the default (0): a waking Bytewax thread no longer preempts a computing one.
BOOKKEEPING_NICENESS = 10


def lower_this_thread(niceness: int = BOOKKEEPING_NICENESS) -> bool:
    """Raise the calling thread's niceness to `niceness` (threads it starts inherit it);
    False where threads have no priority of their own (not Linux) or it is already
    that low."""
    if sys.platform != "linux":  # elsewhere PRIO_PROCESS would lower the whole process
        return False
    thread = threading.get_native_id()
    if os.getpriority(os.PRIO_PROCESS, thread) >= niceness:
        return False
    os.setpriority(os.PRIO_PROCESS, thread, niceness)
    return True
