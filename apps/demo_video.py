"""The demo's video, composed at run time from the public photos (see `image_sources`), and
animated images of frames that a browser plays in a loop.

Two head-and-shoulders sprites of the astronaut (the photo and its mirror image, as in the
group photo) move across a gradient and zoom; the mirrored one slides out of the picture
on the right part-way, so the frames after have one face, and near the end comes back in
from the left (a face that returns after a while: a new track for the tracker). The
cameraman of `camera.png` is not used: he looks aside, and OpenCV's frontal-face cascade
(DeepFace's `opencv` detector) finds him at no size or crop, so a video of him would have
a face that no result shows.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from apps.image_sources import skimage_data_dir
from apps.video_source import open_video_writer

Box = tuple[int, int, int, int]  # x, y, w, h

ANIMATION_SUFFIXES = frozenset({".webp", ".gif"})

# astronaut.png (512x512): her head and shoulders, the face centred across. The face is
# where OpenCV's frontal-face cascade finds it in the whole photo (scale 1.1, 10
# neighbours, as DeepFace's opencv detector asks): (177, 66, 95, 95).
ASTRONAUT = "astronaut.png"
ASTRONAUT_CROP: Box = (104, 6, 240, 280)
ASTRONAUT_FACE: Box = (177, 66, 95, 95)

# Backdrop: top and bottom colours (BGR) of a vertical gradient, far from skin tones.
BACKDROP_TOP = (90, 50, 20)
BACKDROP_BOTTOM = (170, 130, 70)


@dataclass(frozen=True)
class ComposedVideo:
    """A composed video file and where its faces are: `boxes[i]` holds the (x, y, w, h)
    of each face wholly inside frame i, left sprite first."""

    path: Path
    fps: float
    frame_count: int
    size: tuple[int, int]  # width, height
    boxes: tuple[tuple[Box, ...], ...]


@dataclass(frozen=True)
class Sprite:
    """A cropped photo and its face's box within the crop."""

    image: np.ndarray
    face: Box


@dataclass(frozen=True)
class Placement:
    """Where a sprite is in one frame: its top-left corner and its scale."""

    x: float
    y: float
    scale: float


def _load_sprite(data_dir: Path, mirror: bool) -> Sprite:
    """The astronaut's head and shoulders, mirrored if asked, and her face's box in it."""
    photo = cv2.imread(str(data_dir / ASTRONAUT), cv2.IMREAD_COLOR)
    if photo is None:
        raise FileNotFoundError(f"{data_dir / ASTRONAUT}: not readable as an image")
    x, y, w, h = ASTRONAUT_CROP
    face_x, face_y, face_w, face_h = ASTRONAUT_FACE
    crop = photo[y : y + h, x : x + w]
    face_x, face_y = face_x - x, face_y - y
    if mirror:
        crop, face_x = cv2.flip(crop, 1), w - face_x - face_w
    return Sprite(np.ascontiguousarray(crop), (face_x, face_y, face_w, face_h))


def _backdrop(size: tuple[int, int]) -> np.ndarray:
    """A vertical gradient of `size` (width, height), BGR."""
    width, height = size
    ramp = np.linspace(0.0, 1.0, height)[:, None]
    colours = (1 - ramp) * np.array(BACKDROP_TOP) + ramp * np.array(BACKDROP_BOTTOM)
    return np.repeat(colours[:, None, :], width, axis=1).round().astype(np.uint8)


def _smoothstep(t: float) -> float:
    """0 before 0, 1 after 1, and an S-curve between: a start and stop without jolts."""
    t = min(1.0, max(0.0, t))
    return t * t * (3 - 2 * t)


def _placements(t: float, size: tuple[int, int], sprite_size: tuple[int, int]) -> list[Placement]:
    """Where both sprites are at time t (0 to 1 over the video), in a picture of `size`.

    The left one zooms in while it crosses to the right, slowly at first; the right one
    zooms out and, from 50% to 70% of the video, slides out of the picture ahead of the
    left one, then from 78% to the end slides back in on the left, behind the left one, so
    they never overlap. Sizes and paths are fractions of the picture, so every size shows
    the same scene (at 640x480 the faces are 76 to 104 px).
    """
    width, height = size
    sprite_w, sprite_h = sprite_size
    left_scale = (0.47 + 0.17 * t) * height / sprite_h
    right_scale = (0.61 - 0.14 * t) * height / sprite_h
    left_travel = 0.96 * width - sprite_w * left_scale
    left = Placement(
        x=0.02 * width + t * t * left_travel,
        y=0.98 * height - sprite_h * left_scale - 0.08 * height * math.sin(math.pi * t),
        scale=left_scale,
    )
    right_start = 0.98 * width - sprite_w * (0.61 * height / sprite_h)
    right_x = right_start + 0.05 * width * t + _smoothstep((t - 0.5) / 0.2) * (width - right_start)
    if t >= 0.78:  # back in from the left
        right_w = sprite_w * right_scale
        right_x = -right_w + _smoothstep((t - 0.78) / 0.22) * (right_w + 0.03 * width)
    right = Placement(x=right_x, y=0.06 * height + 0.12 * height * t, scale=right_scale)
    return [left, right]


def _paste(canvas: np.ndarray, sprite: Sprite, place: Placement) -> Box | None:
    """Draw the sprite on the canvas (clipped at its edges); the face's box in the canvas
    when the face is wholly inside it, else None."""
    crop_h, crop_w = sprite.image.shape[:2]
    w, h = round(crop_w * place.scale), round(crop_h * place.scale)
    x, y = round(place.x), round(place.y)
    scaled = cv2.resize(sprite.image, (w, h), interpolation=cv2.INTER_AREA)
    height, width = canvas.shape[:2]
    left, top = max(0, x), max(0, y)
    right, bottom = min(width, x + w), min(height, y + h)
    if left < right and top < bottom:
        canvas[top:bottom, left:right] = scaled[top - y : bottom - y, left - x : right - x]
    fx, fy, fw, fh = sprite.face
    face = (x + round(fx * w / crop_w), y + round(fy * h / crop_h))
    face_size = (round(fw * w / crop_w), round(fh * h / crop_h))
    inside = face[0] >= 0 and face[1] >= 0
    inside = inside and face[0] + face_size[0] <= width and face[1] + face_size[1] <= height
    return (*face, *face_size) if inside else None


def demo_frames(
    frame_count: int, size: tuple[int, int], data_dir: Path | None = None
) -> Iterator[tuple[np.ndarray, tuple[Box, ...]]]:
    """The video's frames, each with the boxes of the faces wholly inside it."""
    folder = data_dir or skimage_data_dir()
    sprites = [_load_sprite(folder, mirror=False), _load_sprite(folder, mirror=True)]
    sprite_h, sprite_w = sprites[0].image.shape[:2]
    background = _backdrop(size)
    for index in range(frame_count):
        t = index / max(1, frame_count - 1)
        canvas = background.copy()
        places = _placements(t, size, (sprite_w, sprite_h))
        boxes = [
            _paste(canvas, sprite, place) for sprite, place in zip(sprites, places, strict=True)
        ]
        yield canvas, tuple(box for box in boxes if box is not None)


def compose_demo_video(
    path: Path, seconds: float = 10.0, fps: float = 5.0, size: tuple[int, int] = (640, 480)
) -> ComposedVideo:
    """Write the demo video to `path` (.mp4 or .avi; ValueError for other suffixes) and
    say where its faces are. The same call writes the same pixels."""
    writer = open_video_writer(path, fps, size)
    frame_count = max(1, round(seconds * fps))
    boxes = []
    try:
        for frame, frame_boxes in demo_frames(frame_count, size):
            writer.write(frame)
            boxes.append(frame_boxes)
    finally:
        writer.release()
    return ComposedVideo(path, fps, frame_count, size, tuple(boxes))


def write_animation(frames: Sequence[np.ndarray], path: Path, fps: float) -> Path:
    """Write the frames (BGR) as an animated WebP or GIF (by suffix; ValueError for others)
    that plays forever at `fps`; RuntimeError when OpenCV cannot write it."""
    suffix = path.suffix.lower()
    if suffix not in ANIMATION_SUFFIXES:
        raise ValueError(f"{path.name}: an animation is {' or '.join(sorted(ANIMATION_SUFFIXES))}")
    animation = cv2.Animation()
    animation.frames = list(frames)
    animation.durations = [round(1000 / fps)] * len(frames)
    animation.loop_count = 0  # 0: loop forever
    if not cv2.imwriteanimation(str(path), animation):
        raise RuntimeError(f"{path}: OpenCV could not write the animation")
    return path
