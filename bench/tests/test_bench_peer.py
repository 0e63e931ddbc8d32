"""The benchmarks' peer: DeepFace's own gRPC server, as `make bench` runs it. An image
without a face is an error in DeepFace's answer; the bench counts it as no face, as
facestream's NO_FACE (the public demo set, used on a clone without the shared photos, has
such images)."""

from __future__ import annotations

import cv2
import numpy as np

from apps.image_sources import demo_images
from bench.peer_server import peer_analyze
from bench.systems import peer_servers
from facestream.faces import face_crops


def test_the_peer_counts_faces_and_an_image_without_one_as_none(synthetic_home):
    photos = {image.name: image.data for image in demo_images()}
    with peer_servers(synthetic_home, 1, 1, photos["astronaut.png"]) as peers:
        stub, _process = peers[0]
        assert peer_analyze(stub, photos["astronaut.png"], ["age"]) >= 1
        assert peer_analyze(stub, photos["coffee.png"], ["age"]) == 0
        # A face crop with detector skip, as the bench's crops row sends them: one face.
        astronaut = cv2.imdecode(np.frombuffer(photos["astronaut.png"], np.uint8), 1)
        crop = face_crops(astronaut, "opencv")[0]
        assert peer_analyze(stub, crop, ["age"], detector_backend="skip") == 1
