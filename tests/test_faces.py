"""Face finding: DeepFace's own detection for normal images, downscaled detection for
large ones (same faces, boxes in original pixels, crops from the full image)."""

from __future__ import annotations

import numpy as np
import pytest

from facestream.faces import (
    Face,
    Region,
    crop_faces,
    face_crops,
    find_faces,
    locate_faces,
    model_input,
)
from facestream.images import decode_image
from tests.photos import LARGE, SINGLE_FACE, TWO_FACES, WITH_FACES

MIB = 1024 * 1024


def box(face: Face) -> tuple[int, int, int, int]:
    return (face.x, face.y, face.w, face.h)


def iou(a: Face, b: Face) -> float:
    x1, y1 = max(a.x, b.x), max(a.y, b.y)
    x2, y2 = min(a.x + a.w, b.x + b.w), min(a.y + a.h, b.y + b.h)
    inter = max(0, x2 - x1) * max(0, y2 - y1)
    return inter / (a.w * a.h + b.w * b.h - inter)


def load(folder, name):
    return decode_image((folder / name).read_bytes(), 10 * MIB, 40_000_000)


def record_detector_inputs(monkeypatch) -> list[tuple[int, ...]]:
    """Shapes of the images the real OpenCV detector is given from now on (in the model
    worker, where the detector is)."""
    from deepface.modules import modeling

    detector = modeling.build_model(task="face_detector", model_name="opencv")
    shapes = []
    real_detect = detector.detect_faces

    def recording_detect(img):
        shapes.append(img.shape)
        return real_detect(img)

    monkeypatch.setattr(detector, "detect_faces", recording_detect)
    return shapes


@pytest.mark.model_process
@pytest.mark.models
@pytest.mark.parametrize("name", [LARGE, TWO_FACES])
def test_large_images_are_detected_downscaled_with_the_same_faces(
    analyzer, public_photos, monkeypatch, name
):
    image = load(public_photos, name)
    full = analyzer.find_faces(image, "opencv", detection_max_side=0)
    detector_inputs = record_detector_inputs(monkeypatch)
    scaled = analyzer.find_faces(image, "opencv", detection_max_side=1024)
    # DeepFace pads by half the size on each side: the detector saw at most 2 x 1024.
    assert max(detector_inputs[0][:2]) <= 2 * 1024
    assert len(scaled) == len(full) > 0
    for face in scaled:
        assert max(iou(face, other) for other in full) >= 0.8
        # Cropped from the full-resolution image, not from the small copy.
        assert face.crop.shape[0] >= 0.8 * face.h


@pytest.mark.model_process
@pytest.mark.models
def test_images_within_the_limit_are_detected_as_deepface_does(analyzer, public_photos):
    image = load(public_photos, WITH_FACES)
    limited = analyzer.find_faces(image, "opencv", detection_max_side=2048)
    exact = analyzer.find_faces(image, "opencv", detection_max_side=0)
    assert [(f.x, f.y, f.w, f.h, f.confidence) for f in limited] == [
        (f.x, f.y, f.w, f.h, f.confidence) for f in exact
    ]
    assert all(np.array_equal(a.crop, b.crop) for a, b in zip(limited, exact, strict=True))


@pytest.mark.model_process
@pytest.mark.models
@pytest.mark.parametrize("max_side", [0, 1024])
def test_faces_come_in_one_order_whatever_order_the_detector_returns(
    analyzer, public_photos, monkeypatch, max_side
):
    # OpenCV's parallel cascade returns the same faces in a varying order from call to call.
    from deepface.modules import modeling

    image = load(public_photos, WITH_FACES)
    detector = modeling.build_model(task="face_detector", model_name="opencv")
    as_detected = analyzer.find_faces(image, "opencv", max_side)
    real_detect = detector.detect_faces
    monkeypatch.setattr(detector, "detect_faces", lambda img: real_detect(img)[::-1])
    reversed_detection = analyzer.find_faces(image, "opencv", max_side)

    def boxes(faces):
        return [(f.x, f.y, f.w, f.h, f.confidence) for f in faces]

    assert len(as_detected) >= 10
    assert boxes(reversed_detection) == boxes(as_detected)
    assert boxes(as_detected) == sorted(boxes(as_detected))  # left to right


@pytest.mark.model_process
@pytest.mark.models
def test_model_input_is_what_deepface_analyze_feeds_the_models(analyzer, public_photos):
    from deepface import DeepFace
    from deepface.modules import preprocessing

    path = public_photos / SINGLE_FACE[1]
    [face] = find_faces(load(public_photos, path.name), "opencv", 0)
    [extracted] = DeepFace.extract_faces(str(path), detector_backend="opencv")
    # DeepFace.analyze: RGB floats from extract_faces, flipped back to BGR, then resized.
    expected = preprocessing.resize_image(extracted["face"][:, :, ::-1], (224, 224))[0]
    ours = model_input(face.crop)
    assert ours.dtype == np.float32 and ours.shape == (224, 224, 3)
    assert np.array_equal(ours, expected)


@pytest.mark.model_process
@pytest.mark.models
def test_an_image_without_faces_gives_none(analyzer, public_photos):
    assert analyzer.find_faces(load(public_photos, "rocket.jpg"), "opencv", 2048) == []


@pytest.mark.model_process
@pytest.mark.models
def test_face_crops_are_the_extracted_faces_and_skip_takes_them_whole(analyzer, public_photos):
    image = load(public_photos, TWO_FACES)
    faces = find_faces(image, "opencv", 0)
    crops = face_crops(image, "opencv")
    assert len(crops) == len(faces) >= 2
    for face, crop in zip(faces, crops, strict=True):
        decoded = decode_image(crop, 10 * MIB, 40_000_000)
        assert np.array_equal(decoded, face.crop)  # PNG: the crop analysed is the one extracted
        [whole] = find_faces(decoded, "skip", 0)
        assert (whole.x, whole.y) == (0, 0)
        assert np.array_equal(whole.crop, face.crop)


@pytest.mark.model_process
@pytest.mark.models
@pytest.mark.parametrize("bordered", [False, True])
def test_a_search_around_known_faces_finds_them_at_a_small_scale(analyzer, monkeypatch, bordered):
    from apps.demo_video import demo_frames

    for picture, _boxes in list(demo_frames(10, (640, 480)))[::4]:
        whole = find_faces(picture, "opencv", 0, bordered)
        assert whole
        regions = []
        for face in whole:
            size = max(face.w, face.h)
            regions.append(
                Region(face.x - size // 2, face.y - size // 2, 2 * size, 2 * size, 48 / size)
            )
        detector_inputs = record_detector_inputs(monkeypatch)
        around = find_faces(picture, "opencv", 0, bordered, regions)
        # The detector saw each region at 48 / size: about 96 pixels a side.
        assert detector_inputs and all(max(shape[:2]) <= 100 for shape in detector_inputs)
        assert len(around) == len(whole)
        for face in around:
            assert max(iou(face, other) for other in whole) >= 0.7
            assert face.crop.shape[0] >= 0.8 * face.h  # cropped from the full picture
        # Located only, the same faces without crops; cropped later, the same crops.
        located = locate_faces(picture, "opencv", regions, bordered)
        assert [box(face) for face in located] == [box(face) for face in around]
        assert all(face.crop.size == 0 and face.located for face in located)
        cropped = crop_faces(picture, "opencv", located)
        for late, found in zip(cropped, around, strict=True):
            assert late.located is None and np.array_equal(late.crop, found.crop)
    # A region wholly outside the picture finds nothing; one reaching past its edge is cut
    # there (or, bordered, filled black as DeepFace's bordered copy is).
    assert find_faces(picture, "opencv", 0, bordered, [Region(700, 500, 50, 50)]) == []
    edge = find_faces(picture, "opencv", 0, bordered, [Region(-40, -40, 120, 120, 0.5)])
    assert all(face.x >= 0 and face.y >= 0 for face in edge)


@pytest.mark.model_process
@pytest.mark.models
@pytest.mark.parametrize("max_side", [0, 1024])
@pytest.mark.parametrize("bordered", [False, True])
def test_the_whole_image_located_gives_find_faces_faces_and_crops(
    public_photos, monkeypatch, max_side, bordered
):
    image = load(public_photos, LARGE)
    found = find_faces(image, "opencv", max_side, bordered)
    detector_inputs = record_detector_inputs(monkeypatch)
    located = locate_faces(image, "opencv", None, bordered, detection_max_side=max_side)
    side = max_side or max(image.shape[:2])
    # Without the border, on the image itself: a quarter of the pixels.
    assert max(detector_inputs[0][:2]) == (2 * side if bordered else side)
    assert len(found) > 0
    assert [(*box(f), f.confidence) for f in located] == [(*box(f), f.confidence) for f in found]
    # Fast mode's faces are only located; DeepFace's own detection aligns on its bordered copy.
    assert all((face.crop.size == 0) != bordered for face in located)
    cropped = crop_faces(image, "opencv", located)
    assert all(np.array_equal(a.crop, b.crop) for a, b in zip(cropped, found, strict=True))
