"""The repository's own test photos, written at test time.

The sources are scikit-image's public-domain / CC0 photos (shipped in its wheel; each one's
source and licence is in `apps.image_sources.PUBLIC_PHOTOS` and docs/test-images.md).
Pictures with many faces, large, small, rotated, grey, in every accepted format, and broken
ones are composed from them here, so the suite needs nothing beside the repository. The
optional shared photo set (docs/test-images.md) is used as well when it is there.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from apps.image_sources import PUBLIC_PHOTOS, group_photo, skimage_data_dir

CROWD_TILE = 320
CROWD_SIZES = (224, 256, 288, 320)


def _read(name: str) -> np.ndarray:
    image = cv2.imread(str(skimage_data_dir() / name), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"{skimage_data_dir() / name}: not readable as an image")
    return image


def _encoded(suffix: str, image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(suffix, image)
    if not ok:
        raise ValueError(f"OpenCV could not encode {suffix}")
    return data.tobytes()


def crowd() -> np.ndarray:
    """Twelve astronauts on a 4x3 grid, at four sizes, every other one mirrored: an image
    with many faces (DeepFace's detector finds all twelve)."""
    astronaut = _read("astronaut.png")
    tiles = []
    for index in range(12):
        size = CROWD_SIZES[index % len(CROWD_SIZES)]
        tile = cv2.resize(astronaut, (size, size), interpolation=cv2.INTER_AREA)
        if index % 2:
            tile = cv2.flip(tile, 1)
        pad = CROWD_TILE - size
        tiles.append(cv2.copyMakeBorder(tile, 0, pad, 0, pad, cv2.BORDER_CONSTANT, value=(40,) * 3))
    return np.vstack([np.hstack(tiles[row * 4 : row * 4 + 4]) for row in range(3)])


def large_crowd() -> np.ndarray:
    """Nine astronauts of 768 px on a 3x3 grid, 2304 px square: a large image whose faces
    DeepFace's detector finds alike at full size and downscaled to 1024 px (boxes within
    IoU 0.93; a 4x4 grid gains a false face at full size or loses overlap)."""
    tile = cv2.resize(_read("astronaut.png"), (768, 768), interpolation=cv2.INTER_LINEAR)
    return np.vstack([np.hstack([tile] * 3)] * 3)


def _rotated(image: np.ndarray, degrees: float) -> np.ndarray:
    height, width = image.shape[:2]
    turn = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    return cv2.warpAffine(image, turn, (width, height))


def _composed() -> dict[str, Callable[[], bytes]]:
    astronaut = _read("astronaut.png")
    jpeg = _encoded(".jpg", astronaut)
    return {
        "group.jpg": lambda: group_photo(skimage_data_dir()),
        "crowd.jpg": lambda: _encoded(".jpg", crowd()),
        "large_crowd_2304.jpg": lambda: _encoded(".jpg", large_crowd()),
        "astronaut_mirror.jpg": lambda: _encoded(".jpg", cv2.flip(astronaut, 1)),
        "astronaut_small.jpg": lambda: _encoded(
            ".jpg", cv2.resize(astronaut, (200, 200), interpolation=cv2.INTER_AREA)
        ),
        "astronaut_large_2400.jpg": lambda: _encoded(
            ".jpg", cv2.resize(astronaut, (2400, 2400), interpolation=cv2.INTER_CUBIC)
        ),
        "astronaut_gray.jpg": lambda: _encoded(
            ".jpg", cv2.cvtColor(cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        ),
        "astronaut_rotated_10.jpg": lambda: _encoded(".jpg", _rotated(astronaut, 10)),
        "astronaut_rotated_90.jpg": lambda: _encoded(".jpg", _rotated(astronaut, 90)),
        "astronaut.webp": lambda: _encoded(".webp", astronaut),
        "astronaut.bmp": lambda: _encoded(".bmp", astronaut),
        "astronaut.tiff": lambda: _encoded(".tiff", astronaut),
        "astronaut_webp_named.jpg": lambda: _encoded(".webp", astronaut),
        "bad/truncated_half.jpg": lambda: jpeg[: len(jpeg) // 2],
        "bad/text_as.jpg": lambda: b"this is text, not a picture\n" * 20,
        "bad/empty.jpg": lambda: b"",
    }


# Single faces, for tests that need one face per image.
SINGLE_FACE = (
    "astronaut.png",
    "astronaut_mirror.jpg",
    "astronaut_small.jpg",
    "astronaut_gray.jpg",
)
WITH_FACES = "crowd.jpg"  # twelve faces
TWO_FACES = "group.jpg"
LARGE = "large_crowd_2304.jpg"  # nine faces, 2304 px
WITHOUT_FACE = "coffee.png"
TRUNCATED = "bad/truncated_half.jpg"


def write_public_photos(folder: Path) -> list[Path]:
    """Write the public test set into `folder`: the scikit-image photos as shipped and the
    pictures composed from them. Returns their paths, sorted."""
    files = {name: (skimage_data_dir() / name).read_bytes for name in PUBLIC_PHOTOS}
    files.update(_composed())
    paths = []
    for name, make in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(make())
        paths.append(path)
    return sorted(paths)
