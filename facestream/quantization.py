"""int8 for OpenVINO: NNCF's post-training quantization of a converted model."""

from __future__ import annotations

import contextlib
import io
import logging
from typing import Any

import numpy as np


def quantize(model: Any, samples: np.ndarray) -> Any:
    """NNCF's post-training quantization of an OpenVINO model to int8, its ranges fitted on
    `samples` (a batch of the model's inputs), the first layer kept from overflowing on CPUs
    without VNNI."""
    # The composition root has told NNCF not to send usage data (di.environment).
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    nncf.set_log_level(logging.ERROR)
    dataset = nncf.Dataset(list(samples), lambda sample: sample[None].astype(np.float32))
    with contextlib.redirect_stdout(io.StringIO()):  # its progress bars
        return nncf.quantize(
            model,
            dataset,
            preset=nncf.QuantizationPreset.PERFORMANCE,
            subset_size=len(samples),
            advanced_parameters=AdvancedQuantizationParameters(
                overflow_fix=OverflowFix.FIRST_LAYER
            ),
        )
