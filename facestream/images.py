"""Image checks and decoding, shared by the gRPC front and the dataflow.

`inspect_image` reads only the header (format and size), so limits are enforced before a
single pixel is decoded; `decode_image` then decodes with OpenCV exactly as DeepFace does
(`cv2.imdecode(..., IMREAD_COLOR)`), so results match `DeepFace.analyze` on the same file.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from facestream.errors import CodedError

# PIL format name -> what a person calls it.
SUPPORTED_FORMATS = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WebP", "BMP": "BMP", "TIFF": "TIFF"}
# Pillow calls a JPEG with a multi-picture extension (phone cameras) "MPO"; its first
# picture is an ordinary JPEG, the one OpenCV (and so DeepFace) decodes.
FORMAT_ALIASES = {"MPO": "JPEG"}
_PNG_IEND = b"IEND\xaeB`\x82"  # the IEND chunk type and its constant CRC
# TIFF tags that place the first page's pixel data: (offsets, byte counts) of its strips
# or of its tiles.
_TIFF_DATA_TAGS = ((273, 279), (324, 325))
# TEM and RSTn stand alone; every other JPEG marker is followed by a 2-byte length.
_JPEG_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})
# The first FF in scan data that is neither stuffing (FF 00), a restart (FF D0-D7) nor fill.
_JPEG_MARKER_IN_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
# PIL only reads headers here; pixels are decoded by OpenCV after facestream's own pixel
# limit (FACESTREAM_MAX_PIXELS) passed, so PIL's fixed bomb limit would only hide the size.
Image.MAX_IMAGE_PIXELS = None


class InvalidImageError(CodedError, ValueError):
    """The bytes are not an image facestream can analyse. `code` is stable, `message` human."""


@dataclass(frozen=True)
class ImageInfo:
    """What the header says: format (PIL's name) and size in pixels."""

    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def _jpeg_first_image_is_complete(data: bytes) -> bool:
    """Walk the JPEG's marker segments from SOI to the EOI that ends its first image.

    Entropy-coded data never holds a marker (FF is stuffed as FF 00, restarts are FF D0-D7),
    so after each scan the next marker is found with one search (~40 us for 100 KB). The
    file is complete when an EOI follows at least one scan; bytes after it (the second
    picture of an MPO, a Motion Photo's video, a camera's padding) are ignored, as OpenCV
    ignores them.
    """
    position, scans = 2, 0  # just after SOI
    while True:
        position = data.find(b"\xff", position)
        if position == -1 or position + 1 >= len(data):
            return False
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
        elif marker == 0xD9:  # EOI
            return scans > 0
        elif marker in _JPEG_STANDALONE_MARKERS:
            position += 2
        else:
            position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
            if marker == 0xDA:  # SOS: the scan's entropy-coded data runs to the next marker
                scans += 1
                following = _JPEG_MARKER_IN_SCAN.search(data, position)
                if following is None:
                    return False
                position = following.start()


def _tiff_first_page_is_complete(image: Image.Image, size: int) -> bool:
    """Every strip (or tile) of the first page, which OpenCV decodes, lies in the bytes."""
    tags = getattr(image, "tag_v2", {})
    for offsets_tag, counts_tag in _TIFF_DATA_TAGS:
        if offsets_tag in tags and counts_tag in tags:
            offsets, counts = tags[offsets_tag], tags[counts_tag]
            offsets = offsets if isinstance(offsets, tuple) else (offsets,)
            counts = counts if isinstance(counts, tuple) else (counts,)
            return len(offsets) == len(counts) and all(
                offset >= 0 and count >= 0 and offset + count <= size
                for offset, count in zip(offsets, counts, strict=True)
            )
    return False  # no pixel data at all


def _is_truncated(image_format: str, data: bytes) -> bool:
    # OpenCV decodes a cut-off JPEG without error and fills the missing rows with grey,
    # so completeness is checked on the bytes.
    if image_format == "JPEG":
        return not _jpeg_first_image_is_complete(data)
    if image_format == "PNG":
        return _PNG_IEND not in data[-1024:]
    if image_format == "WEBP":
        return int.from_bytes(data[4:8], "little") + 8 > len(data)
    if image_format == "BMP":
        return int.from_bytes(data[2:6], "little") > len(data)
    return False


def inspect_image(data: bytes, max_bytes: int, max_pixels: int) -> ImageInfo:
    """Check size, format, pixel count and completeness from the bytes, without decoding.

    Raises InvalidImageError with one of the codes: image.empty, image.too_large,
    image.not_an_image, image.unsupported_format, image.too_many_pixels, image.truncated.
    """
    if not data:
        raise InvalidImageError("image.empty", "The image is empty (0 bytes).")
    if len(data) > max_bytes:
        raise InvalidImageError(
            "image.too_large", f"The image has {len(data)} bytes; the limit is {max_bytes}."
        )
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format, (width, height) = str(image.format), image.size
            # TIFF places its pixels by offsets in the header, read while it is open.
            tiff_complete = image_format == "TIFF" and _tiff_first_page_is_complete(
                image, len(data)
            )
    # Pillow's format plugins raise what they like on hostile headers (NotImplementedError
    # for a DDS variant, struct.error, SyntaxError, ...): each is "not an image we read".
    except Exception:
        raise InvalidImageError(
            "image.not_an_image",
            "The bytes are not an image of a known format; send "
            f"{', '.join(SUPPORTED_FORMATS.values())}.",
        ) from None
    image_format = FORMAT_ALIASES.get(image_format, image_format)
    if image_format not in SUPPORTED_FORMATS:
        raise InvalidImageError(
            "image.unsupported_format",
            f"{image_format} images are not supported; send "
            f"{', '.join(SUPPORTED_FORMATS.values())}.",
        )
    info = ImageInfo(image_format, width, height)
    if info.pixels > max_pixels:
        raise InvalidImageError(
            "image.too_many_pixels",
            f"The image is {width}x{height} ({info.pixels} pixels); the limit is {max_pixels}.",
        )
    if _is_truncated(image_format, data) or (image_format == "TIFF" and not tiff_complete):
        raise InvalidImageError(
            "image.truncated",
            f"The {SUPPORTED_FORMATS[image_format]} data is incomplete (the file was cut off).",
        )
    return info


def decode_image(data: bytes, max_bytes: int, max_pixels: int) -> np.ndarray:
    """Check the image, then decode it to a BGR uint8 array (height, width, 3)."""
    info = inspect_image(data, max_bytes, max_pixels)
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:  # OpenCV's decoders raise on some corrupt data instead of returning None
        image = None
    if image is None:
        raise InvalidImageError(
            "image.undecodable",
            f"The {SUPPORTED_FORMATS[info.format]} image could not be decoded (corrupt data).",
        )
    return image
