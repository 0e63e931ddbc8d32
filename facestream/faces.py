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

`model_input` turns a crop into the (224, 224, 3) float32 array `DeepFace.analyze` feeds
its models: divide by 255 once, then DeepFace's own letterbox resize.

Detectors are not thread-safe (DeepFace's OpenCV detector gave wrong faces under 4
threads): callers serialise `find_faces`, see FaceAnalyzer.find_faces.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facestream import deepface_internals

FACE_SIZE = (224, 224)


@dataclass(frozen=True)
class Face:
    """One detected face: its box in the original image, the detector's confidence, and
    the aligned BGR uint8 crop."""

    x: int
    y: int
    w: int
    h: int
    confidence: float
    crop: np.ndarray


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


def _detect_on_copy(image: np.ndarray, detector_backend: str, scale: float, bordered: bool) -> list:
    """Detect on a copy scaled by `scale` (bordered as DeepFace does, or not); crop and
    align from the full-resolution image."""
    height, width = image.shape[:2]
    small = (
        cv2.resize(
            image,
            (max(1, round(width * scale)), max(1, round(height * scale))),
            interpolation=cv2.INTER_AREA,
        )
        if scale != 1
        else image
    )
    detected_on, border_x, border_y = _bordered(small) if bordered else (small, 0, 0)
    detector = deepface_internals.build_detector(detector_backend)

    def to_full(point: tuple[int, int] | None) -> tuple[int, int] | None:
        if point is None:
            return None
        return (round((point[0] - border_x) / scale), round((point[1] - border_y) / scale))

    faces = []
    for area in deepface_internals.detect_areas(detector, detected_on):
        full_area = deepface_internals.facial_area(
            x=round((area.x - border_x) / scale),
            y=round((area.y - border_y) / scale),
            w=round(area.w / scale),
            h=round(area.h / scale),
            left_eye=to_full(area.left_eye),
            right_eye=to_full(area.right_eye),
            confidence=area.confidence,
            nose=to_full(area.nose),
            mouth_left=to_full(area.mouth_left),
            mouth_right=to_full(area.mouth_right),
        )
        # No border on the full image: extract_face pads the face's surroundings itself,
        # and a bordered copy of a 14 Mpx image would cost ~170 MB.
        faces.append(
            deepface_internals.extract_face(
                area=full_area,
                img=image,
                align=True,
                expand_percentage=0,
                width_border=0,
                height_border=0,
                detector_backend=detector_backend,
            )
        )
    return faces


def find_faces(
    image: np.ndarray, detector_backend: str, detection_max_side: int, bordered: bool = True
) -> list[Face]:
    """Detect and align the faces of a BGR image the way `DeepFace.analyze` does.

    When the image's longer side exceeds `detection_max_side` (0: never), detection runs
    on a downscaled copy; `bordered=False` detects without DeepFace's full-image border
    (fast mode). Faces are listed left to right (by x, then y, w, h). An image without
    faces gives an empty list. Not thread-safe.
    """
    height, width = image.shape[:2]
    if detector_backend == "skip":
        whole = deepface_internals.facial_area(x=0, y=0, w=width, h=height)
        detected = [deepface_internals.detected_face(img=image, area=whole, confidence=0)]
    elif detection_max_side and max(height, width) > detection_max_side:
        detected = _detect_on_copy(
            image, detector_backend, detection_max_side / max(height, width), bordered
        )
    elif not bordered:
        detected = _detect_on_copy(image, detector_backend, 1.0, bordered=False)
    else:
        detected = deepface_internals.detect_faces(
            detector_backend=detector_backend, img=image, align=True, expand_percentage=0
        )
    faces = []
    for face in detected:
        if face.img.shape[0] == 0 or face.img.shape[1] == 0:
            continue
        # The same clipping and rounding as DeepFace's extract_faces.
        area = face.facial_area
        x, y = max(0, int(area.x)), max(0, int(area.y))
        faces.append(
            Face(
                x=x,
                y=y,
                w=min(width - x - 1, int(area.w)),
                h=min(height - y - 1, int(area.h)),
                confidence=round(float(area.confidence or 0), 2),
                crop=face.img,
            )
        )
    # OpenCV's cascade detector runs in parallel and returns the same faces in a varying
    # order (3 calls in 60 on the crowd photo); sorting makes one image give one result.
    return sorted(faces, key=lambda face: (face.x, face.y, face.w, face.h))


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
