"""The public photos: those shipped in the scikit-image wheel (the `demo` extra), public
domain or CC0, which the demo shows and int8's default calibration set is built from."""

from __future__ import annotations

from pathlib import Path


def skimage_data_dir() -> Path:
    """The folder of the photos shipped in the scikit-image wheel (the `demo` extra);
    FileNotFoundError saying what to install when it is missing."""
    try:
        import skimage.data
    except ImportError:
        raise FileNotFoundError(
            "the public demo photos come with scikit-image (the demo extra: "
            "pip install 'facestream[demo]'); or name your own images"
        ) from None

    return Path(skimage.data.data_dir)
