"""Where images come from: the public demo set as shipped, and folders of the user's."""

from __future__ import annotations

import cv2
import numpy as np

from apps.image_sources import (
    GROUP_NAME,
    PUBLIC_PHOTOS,
    demo_images,
    folder_images,
    skimage_data_dir,
)
from facestream.faces import find_faces


def decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def png(width: int, height: int, value: int = 128) -> bytes:
    return cv2.imencode(".png", np.full((height, width, 3), value, np.uint8))[1].tobytes()


def test_demo_images_are_the_public_photos_as_shipped_plus_a_group():
    images = demo_images()
    assert [i.name for i in images] == [*PUBLIC_PHOTOS, GROUP_NAME]
    for image in images[:-1]:
        assert image.data == (skimage_data_dir() / image.name).read_bytes()
    group = decode(images[-1].data)
    assert group.shape == (768, 768, 3)
    # The group holds the astronaut twice (once mirrored): the real detector finds both.
    faces = find_faces(group, "opencv", 2048)
    assert len(faces) == 2
    assert {f.x < 384 for f in faces} == {True, False}


def test_folder_images_are_named_relative_to_the_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.png").write_bytes(png(8, 8))
    (tmp_path / "sub" / "b.JPG").write_bytes(b"jpeg?")
    (tmp_path / "notes.txt").write_text("not an image")
    images = folder_images(tmp_path)
    assert [(i.name, i.data) for i in images] == [
        ("a.png", png(8, 8)),
        ("sub/b.JPG", b"jpeg?"),
    ]
