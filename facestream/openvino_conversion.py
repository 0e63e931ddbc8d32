"""A Keras model as an OpenVINO model, and an OpenVINO model saved as the engine cache keeps
it: one way for whole models (engines.py) and the shared trunk's parts (trunk_parts.py)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def from_keras(model: Any) -> Any:
    """`model` converted to OpenVINO, for batches of any size."""
    import openvino as ov

    inputs = [ov.PartialShape([-1, *tensor.shape[1:]]) for tensor in model.inputs]
    return ov.convert_model(model, input=inputs)


def save_fp32(model: Any, xml_path: Path) -> None:
    """`model` written as `xml_path` and its weights file beside it."""
    import openvino as ov

    # fp16 compression of the saved weights would change results: keep fp32.
    ov.save_model(model, xml_path, compress_to_fp16=False)


@contextmanager
def cache_entry(directory: Path) -> Iterator[Path]:
    """A folder to write the cache entry `directory` in, which becomes `directory` when the
    block ends without an error."""
    # Written beside the final place, then renamed: a crash never leaves half an entry that
    # the next start would read.
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".writing-", dir=directory.parent))
    try:
        yield staging
        try:
            staging.rename(directory)
        except OSError:
            if not directory.is_dir():
                raise
            # Another process wrote it first: theirs is the same conversion.
    finally:
        shutil.rmtree(staging, ignore_errors=True)
