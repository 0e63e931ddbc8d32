"""Generated test images, and what the tests look for in annotated ones."""

from __future__ import annotations

import struct
import zlib

import numpy as np

from apps.report import BOX_COLOR


def box_pixels(picture: np.ndarray) -> int:
    """The pixels of an annotated picture (BGR, or BGRA) in the face boxes' colour."""
    near = np.abs(picture[..., :3].astype(int) - np.array(BOX_COLOR)).max(axis=2) <= 40
    return int(near.sum())


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A small, well-formed PNG whose header claims width x height pixels (a decompression
    bomb as the header shows it: nothing may decode it before checking the size)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _chunk(b"IEND", b"")
    )


def astronaut_jpeg(quality: int = 90) -> bytes:
    """scikit-image's public-domain astronaut photo (one face) as JPEG bytes."""
    import cv2
    from skimage import data

    ok, encoded = cv2.imencode(
        ".jpg",
        cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR),
        [cv2.IMWRITE_JPEG_QUALITY, quality],
    )
    assert ok
    return encoded.tobytes()


def mpo(first: bytes, second: bytes) -> bytes:
    """A multi-picture JPEG (as phone cameras write) made by Pillow from two JPEGs."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.open(io.BytesIO(first)).save(
        out, "MPO", save_all=True, append_images=[Image.open(io.BytesIO(second))]
    )
    return out.getvalue()


def dds_header() -> bytes:
    """A 128-byte DDS header with a pixel format Pillow recognises but does not implement."""
    pixel_format = struct.pack("<2I4s5I", 32, 4, b"ABCD", 0, 0, 0, 0, 0)
    return (
        b"DDS "
        + struct.pack("<7I", 124, 0x1007, 16, 16, 0, 0, 0)
        + b"\0" * 44
        + pixel_format
        + b"\0" * 20
    )
