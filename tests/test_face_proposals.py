"""MTCNN's proposal and refinement networks built in OpenVINO from the mtcnn package's
weights: the same numbers as the package's own Keras networks, every face the cascade finds
proposed, and the detector searching around the proposals finds the cascade's faces."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from facestream.face_proposals import (
    FaceProposals,
    mtcnn_weights,
    proposal_network,
    refinement_network,
)
from facestream.faces import find_faces, locate_faces
from facestream.tracking import box_overlap
from tests.photos import TWO_FACES, WITH_FACES
from tests.test_faces import box, load


@pytest.fixture(scope="module")
def demo_pictures() -> list[np.ndarray]:
    """Every third of the demo video's first 30 frames (640x480)."""
    from apps.demo_video import demo_frames

    return [picture for picture, _boxes in demo_frames(30, (640, 480))][::3]


def compiled(model):
    import openvino as ov

    return ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})


@pytest.mark.model_process
def test_the_networks_give_the_mtcnn_packages_keras_numbers():
    # In the model worker: the package's own networks import TensorFlow.
    from mtcnn.network.pnet import PNet
    from mtcnn.network.rnet import RNet

    rng = np.random.default_rng(3)
    image = rng.uniform(-1, 1, (1, 57, 83, 3)).astype(np.float32)
    patches = rng.uniform(-1, 1, (5, 24, 24, 3)).astype(np.float32)
    for keras_class, build, name, inputs in (
        (PNet, proposal_network, "pnet.lz4", image),
        (RNet, refinement_network, "rnet.lz4", patches),
    ):
        weights = mtcnn_weights(name)
        keras = keras_class()
        keras.build()
        keras.set_weights(weights)
        expected = [np.asarray(output) for output in keras(inputs)]
        nchw = inputs.transpose(0, 3, 1, 2)
        got = list(compiled(build(weights))(nchw).values())
        if got[0].ndim == 4:  # the proposal network's maps come out NCHW
            got = [output.transpose(0, 2, 3, 1) for output in got]
        assert [output.shape for output in got] == [output.shape for output in expected]
        for ours, theirs in zip(got, expected, strict=True):
            np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_every_face_the_cascade_finds_is_proposed(public_photos, demo_pictures):
    proposals = FaceProposals()
    pictures = [load(public_photos, name) for name in (WITH_FACES, TWO_FACES)] + demo_pictures
    found = 0
    for picture in pictures:
        proposed = proposals(picture)
        assert proposals(picture) == proposed  # one picture, one answer
        for face in find_faces(picture, "opencv", 0, bordered=False):
            centre = (face.x + face.w / 2, face.y + face.h / 2)
            assert any(
                x <= centre[0] <= x + w and y <= centre[1] <= y + h for x, y, w, h in proposed
            ), (face, proposed)
            found += 1
    assert found >= len(pictures)
    # Nothing to propose in a plain picture.
    assert proposals(np.full((480, 640, 3), 128, np.uint8)) == []


@pytest.mark.parametrize("bordered", [False, True])
def test_the_whole_image_searched_around_proposals_finds_the_cascades_faces(
    public_photos, demo_pictures, bordered
):
    proposals = FaceProposals()
    pictures = [load(public_photos, TWO_FACES), *demo_pictures]
    for picture in pictures:
        whole = find_faces(picture, "opencv", 0, bordered)
        located = locate_faces(picture, "opencv", None, bordered, proposals=proposals)
        assert len(located) == len(whole)
        for face in whole:
            assert max(box_overlap(box(face), box(other)) for other in located) >= 0.5
        # Only located, in the proposals' regions, even where DeepFace's own bordered
        # detection would have aligned them.
        assert all(face.crop.size == 0 and face.located for face in located)


def test_a_frame_over_the_detection_side_is_proposed_on_downscaled_as_detection_is(
    demo_pictures,
):
    proposals = FaceProposals()
    given = []

    def proposed(image):
        given.append(image.shape[:2])
        return proposals(image)

    for picture in demo_pictures:
        located = locate_faces(picture, "opencv", None, False, 480, proposals=proposed)
        assert given[-1] == (360, 480)  # 640x480 at a longer side of 480
        # Around the proposals scaled back, the faces a full-size search finds.
        whole = find_faces(picture, "opencv", 0, bordered=False)
        assert len(located) == len(whole)
        for face in whole:
            assert max(box_overlap(box(face), box(other)) for other in located) >= 0.5


def test_proposing_imports_neither_tensorflow_nor_the_mtcnn_package():
    script = (
        "import sys, numpy as np\n"
        "from facestream.face_proposals import FaceProposals\n"
        "FaceProposals()(np.zeros((48, 64, 3), np.uint8))\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'mtcnn') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"
