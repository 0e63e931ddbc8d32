"""Where images come from: files and folders a user names, and the public demo set.

The demo set is made only of public-domain / CC0 photos shipped in the scikit-image
wheel (`skimage/data`), plus a group picture composed from them at run time, so anything
a user sees in a demo may be shown anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facestream.public_photos import skimage_data_dir

# Optional photos beside the repository (development machines have them); every user of
# them (tests, benchmarks) falls back to the public photos when they are absent.
SHARED_FACES = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "faces"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})

# skimage/data file -> what it shows and its licence (from skimage's own docstrings).
PUBLIC_PHOTOS: dict[str, str] = {
    "astronaut.png": "astronaut Eileen Collins, NASA (public domain)",
    "camera.png": "man behind a camera, Lav Varshney (CC0)",
    "coffee.png": "a cup of coffee, Rachel Michetti (CC0)",
    "rocket.jpg": "Falcon 9 on its launch pad, SpaceX (public domain)",
    "chelsea.png": "Chelsea the cat, Stefan van der Walt (CC0)",
    "coins.png": "Greek coins, Brooklyn Museum (no known copyright restrictions)",
}
GROUP_NAME = "group.jpg"
GROUP_TILE = 384


@dataclass(frozen=True)
class NamedImage:
    """Image bytes as they would be sent, and the name they are shown under."""

    name: str
    data: bytes


def image_files(paths: Sequence[Path]) -> list[Path]:
    """The files named, and the image files (by suffix) under the folders named, sorted.
    Raises FileNotFoundError for a path that does not exist."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return files


def folder_images(folder: Path) -> list[NamedImage]:
    """The image files under `folder` (or the one file named), named relative to it."""
    files = image_files([folder])
    base = folder if folder.is_dir() else folder.parent
    return [NamedImage(str(path.relative_to(base)), path.read_bytes()) for path in files]


def group_photo(data_dir: Path) -> bytes:
    """A JPEG composed of the public photos: the astronaut, her mirror image, the
    cameraman and the cat on a 2x2 grid, so the demo has an image with several faces."""
    tiles = []
    for name, mirror in (
        ("astronaut.png", False),
        ("astronaut.png", True),
        ("camera.png", False),
        ("chelsea.png", False),
    ):
        tile = cv2.imread(str(data_dir / name), cv2.IMREAD_COLOR)
        if tile is None:
            raise FileNotFoundError(f"{data_dir / name}: not readable as an image")
        tile = cv2.resize(tile, (GROUP_TILE, GROUP_TILE), interpolation=cv2.INTER_AREA)
        tiles.append(cv2.flip(tile, 1) if mirror else tile)
    grid = np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])])
    ok, encoded = cv2.imencode(".jpg", grid, [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        raise ValueError("could not encode the group photo")
    return encoded.tobytes()


def demo_images(data_dir: Path | None = None) -> list[NamedImage]:
    """The public demo set: the scikit-image photos as shipped, then the group photo."""
    folder = data_dir or skimage_data_dir()
    images = [NamedImage(name, (folder / name).read_bytes()) for name in PUBLIC_PHOTOS]
    return [*images, NamedImage(GROUP_NAME, group_photo(folder))]
