"""Where faces may be in a whole frame, found cheaply, so that the detector searches only there.

DeepFace's OpenCV cascade over a whole 640x480 frame costs 140-200 ms of CPU (and twice that
on DeepFace's bordered copy); a tracker searches a frame whole every fraction of a second to
find the faces that come into view, and that search was the largest part of a frame's cost.
The first two stages of MTCNN (its proposal network over an image pyramid, then its
refinement network on each proposal) find the same faces for about 30 ms: over the bench's
demo and grid videos, every face the cascade found lay inside a proposal. The detector then
searches around each proposal (`faces.locate_faces(..., proposals=...)`), so the boxes, eyes
and crops are still the detector's own.

The networks' weights ship in the `mtcnn` package (DeepFace's MTCNN backend); they are read
from its files and the networks built as OpenVINO models here, so that neither that package
nor TensorFlow is imported. Deterministic: one frame always gives the same proposals.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import joblib
import numpy as np
import openvino as ov
import openvino.opset13 as ops

from facestream.tracking import Box

# The proposal network looks at 12x12 windows of each pyramid level, moving 2 pixels.
WINDOW = 12
STRIDE = 2
# Each pyramid level is this much smaller than the one before (MTCNN's own factor).
PYRAMID_STEP = 0.709
# Faces smaller than this (pixels) are not proposed: the cascade finds none under ~30
# pixels with DeepFace's settings, and the pyramid's first level costs the most.
MIN_FACE = 30
# A window is proposed above this face probability, and kept by the refinement network
# above the next (MTCNN's defaults are 0.6 and 0.7: at 0.7 for both, every face the cascade
# found was still proposed, with a fifth fewer windows to refine).
PROPOSE_ABOVE = 0.7
REFINE_ABOVE = 0.7
# Overlapping proposals (intersection over union) are merged above these: within a level,
# then across levels and after refinement.
SAME_LEVEL = 0.5
SAME_FACE = 0.7
REFINED_INPUT = 24


def mtcnn_weights(name: str) -> list[np.ndarray]:
    """One network's weights as the mtcnn package ships them, read without importing it (its
    `__init__` imports TensorFlow)."""
    spec = importlib.util.find_spec("mtcnn")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the mtcnn package (a facestream dependency) is not installed")
    return joblib.load(Path(spec.submodule_search_locations[0]) / "assets" / "weights" / name)


def _conv(x: ov.Output, kernel: np.ndarray, bias: np.ndarray) -> ov.Output:
    # Keras kernels are (height, width, in, out); OpenVINO's are (out, in, height, width).
    weights = ops.constant(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
    convolved = ops.convolution(x, weights, [1, 1], [0, 0], [0, 0], [1, 1])
    return ops.add(convolved, ops.constant(bias.reshape(1, -1, 1, 1))).output(0)


def _prelu(x: ov.Output, slope: np.ndarray) -> ov.Output:
    return ops.prelu(x, ops.constant(slope.reshape(-1))).output(0)


def _max_pool(x: ov.Output, size: int, same: bool) -> ov.Output:
    pad = "same_upper" if same else "valid"
    return ops.max_pool(x, [2, 2], [1, 1], [0, 0], [0, 0], [size, size], "floor", pad).output(0)


def _dense(x: ov.Output, kernel: np.ndarray, bias: np.ndarray) -> ov.Output:
    return ops.add(ops.matmul(x, ops.constant(kernel), False, False), ops.constant(bias)).output(0)


def proposal_network(weights: list[np.ndarray]) -> ov.Model:
    """MTCNN's PNet on an NCHW image of any size: per 12x12 window (2-pixel steps) its box
    offsets (N, 4, h, w) and its [not face, face] probabilities (N, 2, h, w)."""
    image = ops.parameter([1, 3, -1, -1], np.float32)
    x = _max_pool(_prelu(_conv(image.output(0), weights[0], weights[1]), weights[2]), 2, True)
    x = _prelu(_conv(x, weights[3], weights[4]), weights[5])
    x = _prelu(_conv(x, weights[6], weights[7]), weights[8])
    offsets = _conv(x, weights[9], weights[10])
    probabilities = ops.softmax(_conv(x, weights[11], weights[12]), 1).output(0)
    return ov.Model([offsets, probabilities], [image])


def refinement_network(weights: list[np.ndarray]) -> ov.Model:
    """MTCNN's RNet on NCHW 24x24 patches: each one's box offsets (N, 4) and its [not face,
    face] probabilities (N, 2)."""
    patches = ops.parameter([-1, 3, REFINED_INPUT, REFINED_INPUT], np.float32)
    x = _max_pool(_prelu(_conv(patches.output(0), weights[0], weights[1]), weights[2]), 3, True)
    x = _max_pool(_prelu(_conv(x, weights[3], weights[4]), weights[5]), 3, False)
    x = _prelu(_conv(x, weights[6], weights[7]), weights[8])
    # Keras flattens its (N, H, W, C) features after permuting them to (N, W, H, C).
    x = ops.transpose(x, ops.constant(np.array([0, 3, 2, 1]))).output(0)
    x = ops.reshape(x, ops.constant(np.array([-1, weights[9].shape[0]])), False).output(0)
    x = ops.prelu(_dense(x, weights[9], weights[10]), ops.constant(weights[11])).output(0)
    offsets = _dense(x, weights[12], weights[13])
    probabilities = ops.softmax(_dense(x, weights[14], weights[15]), 1).output(0)
    return ov.Model([offsets, probabilities], [patches])


class FaceProposals:
    """`proposals(image)`: the boxes (x, y, w, h; square, possibly past the edges) where a BGR
    image may show a face of at least MIN_FACE pixels. Not thread-safe (one inference request
    per network), as the detectors it stands in front of."""

    def __init__(self, threads: int = 1) -> None:
        # One thread: the networks are small, and the detector that follows has the cores.
        config = {"INFERENCE_NUM_THREADS": threads, "ENABLE_CPU_PINNING": False}
        core = ov.Core()
        self._propose = core.compile_model(
            proposal_network(mtcnn_weights("pnet.lz4")), "CPU", config
        )
        self._refine = core.compile_model(
            refinement_network(mtcnn_weights("rnet.lz4")), "CPU", config
        )

    def __call__(self, image: np.ndarray) -> list[Box]:
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        proposed = _merged(self._pyramid(rgb), SAME_FACE)
        if len(proposed) == 0:
            return []
        boxes = _square(proposed)
        patches = np.stack([_patch(rgb, box) for box in boxes[:, :4]])
        offsets, probabilities = self._refine(_normalised(patches).transpose(0, 3, 1, 2)).values()
        face = probabilities[:, 1] > REFINE_ABOVE
        boxes, offsets = boxes[face], offsets[face]
        sides = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]] * 2, axis=1)
        refined = np.column_stack([boxes[:, :4] + offsets * sides, probabilities[face, 1]])
        return [
            (round(x1), round(y1), round(x2 - x1), round(y2 - y1))
            for x1, y1, x2, y2, _ in _square(_merged(refined, SAME_FACE))
        ]

    def _pyramid(self, rgb: np.ndarray) -> np.ndarray:
        """The proposal network's windows above PROPOSE_ABOVE on every level of the image's
        pyramid, merged within each level: rows of x1, y1, x2, y2, probability."""
        height, width = rgb.shape[:2]
        found = []
        scale = WINDOW / MIN_FACE
        while min(height, width) * scale >= WINDOW:
            size = (int(np.ceil(width * scale)), int(np.ceil(height * scale)))
            level = cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR)
            offsets, probabilities = self._propose(
                _normalised(level).transpose(2, 0, 1)[None]
            ).values()
            rows, columns = np.nonzero(probabilities[0, 1] > PROPOSE_ABOVE)
            if len(rows):
                shift = offsets[0][:, rows, columns] * WINDOW
                left, top = columns * STRIDE, rows * STRIDE
                windows = np.column_stack(
                    [
                        (left + shift[0]) / scale,
                        (top + shift[1]) / scale,
                        (left + WINDOW + shift[2]) / scale,
                        (top + WINDOW + shift[3]) / scale,
                        probabilities[0, 1, rows, columns],
                    ]
                )
                found.append(_merged(windows, SAME_LEVEL))
            scale *= PYRAMID_STEP
        return np.concatenate(found) if found else np.empty((0, 5), np.float32)


def _normalised(pixels: np.ndarray) -> np.ndarray:
    """MTCNN's input: RGB values from 0..255 to about -1..1."""
    return (pixels.astype(np.float32) - 127.5) / 128


def _merged(boxes: np.ndarray, overlap: float) -> np.ndarray:
    """The boxes (x1, y1, x2, y2, probability) that non-maximum suppression keeps."""
    if len(boxes) == 0:
        return boxes
    rects = [(x1, y1, x2 - x1, y2 - y1) for x1, y1, x2, y2 in boxes[:, :4].tolist()]
    keep = cv2.dnn.NMSBoxes(rects, boxes[:, 4].tolist(), 0.0, overlap)
    return boxes[np.asarray(keep, dtype=int).reshape(-1)]


def _square(boxes: np.ndarray) -> np.ndarray:
    """Each box grown to a square about its centre, as MTCNN does between its stages."""
    squared = boxes.copy()
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(width, height)
    squared[:, 0] += (width - side) / 2
    squared[:, 1] += (height - side) / 2
    squared[:, 2] = squared[:, 0] + side
    squared[:, 3] = squared[:, 1] + side
    return squared


def _patch(rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The box's pixels (black past the image's edges) at the refinement network's size."""
    height, width = rgb.shape[:2]
    x1, y1, x2, y2 = (round(value) for value in box)
    patch = np.zeros((max(1, y2 - y1), max(1, x2 - x1), 3), np.uint8)
    left, top, right, bottom = max(0, x1), max(0, y1), min(width, x2), min(height, y2)
    if right > left and bottom > top:
        patch[top - y1 : bottom - y1, left - x1 : right - x1] = rgb[top:bottom, left:right]
    return cv2.resize(patch, (REFINED_INPUT, REFINED_INPUT), interpolation=cv2.INTER_LINEAR)
