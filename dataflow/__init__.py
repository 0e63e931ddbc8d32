"""The Bytewax dataflow: `python -m bytewax.run dataflow` finds `flow` here.

`flow` is built on first access by the dataflow's composition root (`di.dataflow_root`),
from this process's settings, so that importing `dataflow.steps` (tests, tools) builds
nothing.
"""

from __future__ import annotations

from typing import Any

from bytewax.dataflow import Dataflow

_flow: Dataflow | None = None


def __getattr__(name: str) -> Any:
    global _flow
    if name != "flow":
        raise AttributeError(f"module 'dataflow' has no attribute {name!r}")
    if _flow is None:
        from di.dataflow_root import dataflow_of_this_process

        _flow = dataflow_of_this_process()
    return _flow
