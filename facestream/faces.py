"""Finding faces in an image and preparing them for the attribute models, as DeepFace does.

`find_faces` runs DeepFace's own detection and alignment (`detection.detect_faces`, the
code behind `DeepFace.analyze`) and keeps each face as an aligned BGR uint8 crop. Large
images may be downscaled for detection only: boxes are mapped back and the faces are
cropped and aligned from the full-resolution image.

DeepFace detects on a copy of the image with a 50% black border on every side (4x the
pixels), so that alignment cannot rotate a face near the edge out of the picture. Fast mode
(`bordered=False`) detects on the image itself; alignment still pads each face's
surroundings locally (DeepFace's extract_face), so nothing is cut, but the detector sees
different pixels and its boxes may differ by a few pixels (docs/performance.md).

`locate_faces` finds faces in regions of an image (a tracker's expected faces), around the
places a cheap first search proposes (`face_proposals`), or in the whole image without
DeepFace's border (fast mode), without aligning them; `crop_faces` aligns and crops the ones
a caller needs, as `find_faces` would have.

`model_input` turns a crop into the (224, 224, 3) float32 array `DeepFace.analyze` feeds
its models: divide by 255 once, then DeepFace's own letterbox resize.

Detectors are not thread-safe (DeepFace's OpenCV detector gave wrong faces under 4
threads): callers serialise `find_faces`, see FaceAnalyzer.find_faces.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from facestream import deepface_internals
from facestream.tracking import Box, box_overlap

FACE_SIZE = (224, 224)
# Two detections of one face in overlapping regions overlap at least this much.
SAME_FACE = 0.5
# A proposed face is searched for in its box grown by this share of its size on every side,
# scaled so that the face is about PROPOSAL_FACE_PX wide (never enlarged). A proposal's box
# is where the face is (unlike a track's expected box, which guesses where it moved); at 48
# pixels the cascade missed 2.5% of the bench's grid video's faces in their proposals, at
# 64 0.5%.
PROPOSAL_MARGIN = 0.5
PROPOSAL_FACE_PX = 64


@dataclass(frozen=True)
class Located:
    """Where the detector found a face, in the image's pixels (DeepFace's FacialAreaRegion),
    and whether its eyes are to be found again at full resolution before it is aligned."""

    area: object
    refine_eyes: bool


@dataclass(frozen=True)
class Face:
    """One detected face: its box in the original image, the detector's confidence, and
    the aligned BGR uint8 crop; a face only located (`locate_faces`) has an empty crop
    until `crop_faces` aligns it."""

    x: int
    y: int
    w: int
    h: int
    confidence: float
    crop: np.ndarray
    located: Located | None = None


NOT_CROPPED = np.empty((0, 0, 3), np.uint8)


def _bordered(image: np.ndarray) -> tuple[np.ndarray, int, int]:
    # DeepFace detects on the image with a 50% black border so that alignment cannot
    # rotate a face near the edge out of the picture.
    height_border, width_border = int(0.5 * image.shape[0]), int(0.5 * image.shape[1])
    bordered = cv2.copyMakeBorder(
        image,
        height_border,
        height_border,
        width_border,
        width_border,
        cv2.BORDER_CONSTANT,
        value=[0, 0, 0],
    )
    return bordered, width_border, height_border


@dataclass(frozen=True)
class Region:
    """Where to look for faces in an image: a box (it may reach past the image's edges)
    and the scale it is searched at."""

    x: int
    y: int
    w: int
    h: int
    scale: float = 1.0


def region_around(box: Box, margin: float, face_px: int) -> Region:
    """The region searched for a face expected in `box`: the box grown by `margin` of its
    size on every side, at the scale that makes the face `face_px` wide (never enlarged)."""
    x, y, w, h = box
    size = max(w, h, 1)
    grown = round(margin * size)
    scale = min(1.0, face_px / size)
    return Region(x - grown, y - grown, w + 2 * grown, h + 2 * grown, scale)


def _region_pixels(
    image: np.ndarray, region: Region, bordered: bool
) -> tuple[np.ndarray, int, int]:
    """The region's pixels and where they start in the image. Bordered, the parts past the
    image's edges are black, as on DeepFace's bordered copy; otherwise the region is cut at
    the edges."""
    height, width = image.shape[:2]
    left, top = max(0, region.x), max(0, region.y)
    right, bottom = min(width, region.x + region.w), min(height, region.y + region.h)
    inside = image[top:bottom, left:right]
    if not bordered or inside.size == 0:
        return inside, left, top
    padded = cv2.copyMakeBorder(
        inside,
        top - region.y,
        region.y + region.h - bottom,
        left - region.x,
        region.x + region.w - right,
        cv2.BORDER_CONSTANT,
        value=[0, 0, 0],
    )
    return padded, region.x, region.y


def _detect_on_copy(image: np.ndarray, detector_backend: str, scale: float, bordered: bool) -> list:
    """Detect on a copy scaled by `scale` (bordered as DeepFace does, or not); crop and
    align from the full-resolution image."""
    detected_on = _scaled(image, scale)
    detected_on, border_x, border_y = _bordered(detected_on) if bordered else (detected_on, 0, 0)
    found = _located(detector_backend, detected_on, scale, -border_x / scale, -border_y / scale)
    return [_crop(image, detector_backend, located) for located in found]


def _scaled(image: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1:
        return image
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _located(
    detector_backend: str, detected_on: np.ndarray, scale: float, origin_x: float, origin_y: float
) -> list[Located]:
    """The faces the detector finds in `detected_on` (a part of an image starting at
    (origin_x, origin_y), scaled by `scale`), in the image's pixels."""
    detector = deepface_internals.build_detector(detector_backend)

    def to_full(point: tuple[int, int] | None) -> tuple[int, int] | None:
        if point is None:
            return None
        return (round(point[0] / scale + origin_x), round(point[1] / scale + origin_y))

    return [
        Located(
            deepface_internals.facial_area(
                round(area.x / scale + origin_x),
                round(area.y / scale + origin_y),
                round(area.w / scale),
                round(area.h / scale),
                left_eye=to_full(area.left_eye),
                right_eye=to_full(area.right_eye),
                confidence=area.confidence,
                nose=to_full(area.nose),
                mouth_left=to_full(area.mouth_left),
                mouth_right=to_full(area.mouth_right),
            ),
            # Eyes found on a scaled face are a few pixels off, and the alignment turns
            # the face by them: found again at full resolution, the crop is the one a
            # full-size detection makes.
            refine_eyes=scale != 1,
        )
        for area in deepface_internals.detect_areas(detector, detected_on)
    ]


def _crop(image: np.ndarray, detector_backend: str, located: Located) -> object:
    """A located face aligned and cropped from `image`: DeepFace's DetectedFace."""
    area = located.area
    if located.refine_eyes:
        detector = deepface_internals.build_detector(detector_backend)
        eyes = _eyes_at_full_size(image, detector, _box_of(area))
        if eyes is not None:
            area = replace(area, left_eye=eyes[0], right_eye=eyes[1])  # type: ignore[type-var]
    # No border on the full image: extract_face pads the face's surroundings itself,
    # and a bordered copy of a 14 Mpx image would cost ~170 MB.
    return deepface_internals.extract_face(
        area=area,
        img=image,
        align=True,
        expand_percentage=0,
        width_border=0,
        height_border=0,
        detector_backend=detector_backend,
    )


def _eyes_at_full_size(
    image: np.ndarray, detector: object, box: tuple[int, int, int, int]
) -> tuple[tuple[int, int] | None, tuple[int, int] | None] | None:
    """The eyes the detector finds in the face at `box` of the full-resolution image, in
    the image's pixels, as its own detection places them; None for a detector without a
    separate eye search."""
    x, y, w, h = box
    left, top = max(0, x), max(0, y)
    found = deepface_internals.find_eyes(detector, image[top : y + h, left : x + w])
    if found is None:
        return None
    return (
        None if found[0] is None else (int(left + found[0][0]), int(top + found[0][1])),
        None if found[1] is None else (int(left + found[1][0]), int(top + found[1][1])),
    )


def _located_in_regions(
    image: np.ndarray, detector_backend: str, regions: Sequence[Region], bordered: bool
) -> list[Located]:
    """Detect in each region at its scale; a face found in two overlapping regions is kept
    once (the first region's)."""
    faces: list[Located] = []
    for region in regions:
        pixels, left, top = _region_pixels(image, region, bordered)
        if pixels.size == 0:
            continue
        scaled = _scaled(pixels, region.scale)
        for face in _located(detector_backend, scaled, region.scale, left, top):
            box = _box_of(face.area)
            if all(box_overlap(box, _box_of(kept.area)) < SAME_FACE for kept in faces):
                faces.append(face)
    return faces


def _box_of(area: object) -> tuple[int, int, int, int]:
    return (int(area.x), int(area.y), int(area.w), int(area.h))  # type: ignore[attr-defined]


def _face(
    area: object, crop: np.ndarray, width: int, height: int, located: Located | None = None
) -> Face:
    """A Face of a detector's area in a `width` x `height` image, with the same clipping
    and rounding as DeepFace's extract_faces."""
    x, y, w, h = _box_of(area)
    x, y = max(0, x), max(0, y)
    return Face(
        x=x,
        y=y,
        w=min(width - x - 1, w),
        h=min(height - y - 1, h),
        confidence=round(float(area.confidence or 0), 2),  # type: ignore[attr-defined]
        crop=crop,
        located=located,
    )


def _in_reading_order(faces: list[Face]) -> list[Face]:
    # OpenCV's cascade detector runs in parallel and returns the same faces in a varying
    # order (3 calls in 60 on the crowd photo); sorting makes one image give one result.
    return sorted(faces, key=lambda face: (face.x, face.y, face.w, face.h))


def find_faces(
    image: np.ndarray,
    detector_backend: str,
    detection_max_side: int,
    bordered: bool = True,
    regions: Sequence[Region] | None = None,
) -> list[Face]:
    """Detect and align the faces of a BGR image the way `DeepFace.analyze` does.

    When the image's longer side exceeds `detection_max_side` (0: never), detection runs
    on a downscaled copy; `bordered=False` detects without DeepFace's full-image border
    (fast mode). With `regions`, detection runs in those parts of the image only, each at
    its scale (a tracker's expected faces). Faces are listed left to right (by x, then y,
    w, h). An image without faces gives an empty list. Not thread-safe.
    """
    height, width = image.shape[:2]
    if regions is not None and detector_backend != "skip":
        return crop_faces(
            image, detector_backend, locate_faces(image, detector_backend, regions, bordered)
        )
    scale = _detection_scale(image, detection_max_side)
    if detector_backend == "skip":
        whole = deepface_internals.facial_area(x=0, y=0, w=width, h=height)
        detected = [deepface_internals.detected_face(img=image, area=whole, confidence=0)]
    elif scale < 1:
        detected = _detect_on_copy(image, detector_backend, scale, bordered)
    elif not bordered:
        detected = _detect_on_copy(image, detector_backend, 1.0, bordered=False)
    else:
        detected = deepface_internals.detect_faces(
            detector_backend=detector_backend, img=image, align=True, expand_percentage=0
        )
    return _in_reading_order(
        [
            _face(face.facial_area, face.img, width, height)
            for face in detected
            if face.img.shape[0] > 0 and face.img.shape[1] > 0
        ]
    )


def locate_faces(
    image: np.ndarray,
    detector_backend: str,
    regions: Sequence[Region] | None,
    bordered: bool = True,
    detection_max_side: int = 0,
    proposals: Callable[[np.ndarray], list[Box]] | None = None,
) -> list[Face]:
    """The faces `find_faces(..., regions=regions)` finds, with its boxes and in its order,
    not yet aligned: each with an empty crop and where it was found, so that `crop_faces`
    crops only the ones needed (a tracker analyses few of the faces it follows).

    `regions` None searches the whole image, as `find_faces` does, downscaled to
    `detection_max_side` (0: never); with `proposals` (`face_proposals`), only around the
    boxes they give for it (proposed on the downscaled image too). Its faces come cropped
    where DeepFace's own detection finds them (`bordered`: it aligns them on its bordered
    copy) and with detector `skip`. Not thread-safe."""
    if regions is None and proposals is not None and detector_backend != "skip":
        regions = _proposed_regions(image, proposals, _detection_scale(image, detection_max_side))
    if detector_backend == "skip" or (regions is None and bordered):
        return find_faces(image, detector_backend, detection_max_side, bordered)
    height, width = image.shape[:2]
    if regions is None:
        scale = _detection_scale(image, detection_max_side)
        found = _located(detector_backend, _scaled(image, scale), scale, 0, 0)
    else:
        found = _located_in_regions(image, detector_backend, regions, bordered)
    return _in_reading_order(
        [
            _face(located.area, NOT_CROPPED, width, height, located)
            for located in found
            if _inside(_box_of(located.area), width, height)
        ]
    )


def _detection_scale(image: np.ndarray, detection_max_side: int) -> float:
    """The scale a whole image is searched at: 1, or less to bring its longer side to
    `detection_max_side` (0: never)."""
    side = max(image.shape[:2])
    return detection_max_side / side if detection_max_side and side > detection_max_side else 1.0


def _proposed_regions(
    image: np.ndarray, proposals: Callable[[np.ndarray], list[Box]], scale: float
) -> list[Region]:
    """The regions around the faces `proposals` finds in the image at `scale`, in the
    image's own pixels."""
    boxes = proposals(_scaled(image, scale) if scale < 1 else image)
    return [
        region_around(
            (round(x / scale), round(y / scale), round(w / scale), round(h / scale)),
            PROPOSAL_MARGIN,
            PROPOSAL_FACE_PX,
        )
        for x, y, w, h in boxes
    ]


def _inside(box: tuple[int, int, int, int], width: int, height: int) -> bool:
    """Whether some of the box is inside the image (else DeepFace's crop of it is empty)."""
    x, y, w, h = box
    return x < width and y < height and x + w > 0 and y + h > 0


def crop_faces(image: np.ndarray, detector_backend: str, faces: Sequence[Face]) -> list[Face]:
    """Each face of `locate_faces` aligned and cropped from `image`, as `find_faces` does;
    faces already cropped stay as they are. Not thread-safe."""
    return [
        face
        if face.located is None
        else replace(face, crop=_crop(image, detector_backend, face.located).img, located=None)
        for face in faces
    ]


def face_crops(image: np.ndarray, detector_backend: str) -> list[bytes]:
    """Each face exact mode finds in a BGR image, aligned and cropped, as a PNG: what a
    client that has its own detector sends with detector `skip` (lossless, so that the crop
    analysed is the crop extracted)."""
    return [
        cv2.imencode(".png", face.crop)[1].tobytes()
        for face in find_faces(image, detector_backend, detection_max_side=0)
    ]


def model_input(crop: np.ndarray) -> np.ndarray:
    """The (224, 224, 3) float32 array DeepFace's attribute models get for this BGR crop."""
    # DeepFace normalises only when values exceed 1, and it does so once.
    face = crop / 255 if crop.max() > 1 else crop
    return deepface_internals.resize_image(img=face, target_size=FACE_SIZE)[0]
