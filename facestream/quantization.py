"""int8 for OpenVINO: NNCF's post-training quantization of a converted model."""

from __future__ import annotations

import contextlib
import io
import logging
from typing import Any

import numpy as np

# Bumped when facestream changes how it quantizes: int8 models cached by an older way are
# not read. 2: the matrix products with int8 weights only.
QUANTIZATION_LAYOUT = 2


def quantize(model: Any, samples: np.ndarray) -> Any:
    """NNCF's post-training quantization of an OpenVINO model to int8, its ranges fitted on
    `samples` (a batch of the model's inputs), the first layer kept from overflowing on CPUs
    without VNNI. The fully connected layers (matrix products) get int8 weights only: their
    inputs stay in floating point."""
    # The composition root has told NNCF not to send usage data (di.environment).
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    nncf.set_log_level(logging.ERROR)
    dataset = nncf.Dataset(list(samples), lambda sample: sample[None].astype(np.float32))
    with contextlib.redirect_stdout(io.StringIO()):  # its progress bars
        quantized = nncf.quantize(
            model,
            dataset,
            preset=nncf.QuantizationPreset.PERFORMANCE,
            subset_size=len(samples),
            # A face at a time, a product with int8 inputs runs as a slow int8 GEMM; with
            # int8 weights alone, OpenVINO decompresses them as it reads them, at the speed
            # of memory (VGG-Face's fc6, 103 MB in int8 per head: 44 -> 18 ms on one avx2
            # core). Batches of 4 or more faces are no slower.
            ignored_scope=nncf.IgnoredScope(types=["MatMul"], validate=False),
            advanced_parameters=AdvancedQuantizationParameters(
                overflow_fix=OverflowFix.FIRST_LAYER
            ),
        )
        return nncf.compress_weights(quantized, mode=nncf.CompressWeightsMode.INT8_ASYM)
