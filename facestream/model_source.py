"""What an engine is given to run a model: `ModelSource` (engines.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def _same_inputs(faces: np.ndarray) -> np.ndarray:
    return faces


@dataclass(frozen=True)
class ModelSource:
    """A model to run: `role` names what it is ("emotion", "shared-age-gender-race"), made
    from `weight_files`; `build` makes it as a Keras model (seconds, GBs), only when needed;
    `inputs_of` turns a batch of (n, 224, 224, 3) faces into its inputs (for calibration)."""

    role: str
    weight_files: tuple[Path, ...]
    build: Callable[[], Any]
    inputs_of: Callable[[np.ndarray], np.ndarray] = _same_inputs
