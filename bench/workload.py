"""What every benchmark measures on: the images (the shared photos when they are beside the
repository, else the public demo set) and the two modes' settings."""

from __future__ import annotations

from apps.image_sources import SHARED_FACES, demo_images
from di import Settings, child_environment

# The shared photos with faces that DeepFace's default detector finds at full size
# (MANIFEST.md); the 14 Mpx photo is left out: the peer would spend its time detecting it.
SHARED_PHOTOS = (
    "single_woman_astronaut.png",
    "single_woman_blonde.jpg",
    "single_woman_darkhair.jpg",
    "single_man_glasses.jpg",
    "single_man_bald.jpg",
    "single_man_beard.jpg",
    "single_man_greyhair.jpg",
    "single_man_smallface_2048w.jpg",
    "multi_2_couple.jpg",
    "multi_7_selfie.jpg",
    "edge_webp_named_jpg.jpg",
)

# Exact mode as the peer works: DeepFace's detection at full size. Fast mode: its defaults
# (no full-image border, int8 or bf16 where the CPU has it, large images downscaled for
# detection).
MODES: dict[str, dict[str, str]] = {
    "exact": {"FACESTREAM_MODE": "exact", "FACESTREAM_DETECTION_MAX_SIDE": "0"},
    "fast": {"FACESTREAM_MODE": "fast"},
}


def bench_images() -> tuple[str, list[bytes]]:
    """The shared photos with faces when they are here, else the public demo set."""
    if all((SHARED_FACES / name).is_file() for name in SHARED_PHOTOS):
        return "shared photos", [(SHARED_FACES / name).read_bytes() for name in SHARED_PHOTOS]
    return "public demo set", [image.data for image in demo_images()]


def mode_settings(mode: str) -> Settings:
    """This process's settings with MODES[mode], as a child started with them reads them."""
    return Settings.from_env(child_environment(**MODES[mode]))
