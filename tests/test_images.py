"""Image checks: every bad input gets its own code and message; good images decode as
OpenCV (and so DeepFace) decodes them."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from facestream.images import ImageInfo, InvalidImageError, decode_image, inspect_image
from facestream.requests import (
    InvalidRequestError,
    RequestLimits,
    check_request_id,
    resolve_options,
)
from tests.images import astronaut_jpeg, dds_header, mpo, png_claiming

MIB = 1024 * 1024


def test_every_readable_photo_decodes_like_cv2_imread(valid_test_photos):
    photos = valid_test_photos
    assert len(photos) >= 15
    assert {p.suffix for p in photos} >= {".jpg", ".png", ".webp", ".bmp", ".tiff"}
    for path in photos:
        decoded = decode_image(path.read_bytes(), 10 * MIB, 40_000_000)
        assert np.array_equal(decoded, cv2.imread(str(path))), path.name


def test_webp_named_jpg_is_recognised_by_its_bytes(public_photos):
    info = inspect_image((public_photos / "astronaut_webp_named.jpg").read_bytes(), 10 * MIB, 10**8)
    assert (info.format, info.width, info.height) == ("WEBP", 512, 512)


@pytest.mark.parametrize(
    ("name", "code", "words"),
    [
        ("empty.jpg", "image.empty", "empty"),
        ("text_as.jpg", "image.not_an_image", "not an image"),
        # OpenCV would decode this one, grey-filling the missing half.
        ("truncated_half.jpg", "image.truncated", "incomplete"),
    ],
)
def test_bad_files_are_refused_with_their_reason(public_photos, name, code, words):
    with pytest.raises(InvalidImageError) as caught:
        decode_image((public_photos / "bad" / name).read_bytes(), 10 * MIB, 40_000_000)
    assert caught.value.code == code
    assert words in caught.value.message


def test_jpeg_completeness_with_and_without_bytes_after_its_end():
    photo = astronaut_jpeg()
    assert photo.endswith(b"\xff\xd9")
    # Complete: ending in EOI, or with bytes after it (some cameras pad their files).
    assert inspect_image(photo, MIB, 10**6).format == "JPEG"
    assert inspect_image(photo + b"\x00" * 64, MIB, 10**6).format == "JPEG"
    # Cut inside the last scan, with or without the padding: the EOI is gone.
    cut = photo[: len(photo) * 3 // 4]
    for data in (cut, cut + b"\xff\xd9"[:1]):
        with pytest.raises(InvalidImageError) as caught:
            inspect_image(data, MIB, 10**6)
        assert caught.value.code == "image.truncated"
    # Headers alone, cut before any scan, yet ending in an EOI marker: no image data.
    headers = photo[: photo.find(b"\xff\xda")] + b"\xff\xd9"
    with pytest.raises(InvalidImageError) as caught:
        inspect_image(headers, MIB, 10**6)
    assert caught.value.code == "image.truncated"


def decoded_like_cv2_imread(data: bytes, tmp_path) -> bool:
    """decode_image gives what cv2.imread (and so DeepFace.analyze) reads from the file."""
    path = tmp_path / "image.jpg"
    path.write_bytes(data)
    return np.array_equal(decode_image(data, 10 * MIB, 40_000_000), cv2.imread(str(path)))


def test_multi_picture_jpeg_is_read_as_its_first_picture(tmp_path):
    first, second = astronaut_jpeg(90), astronaut_jpeg(40)
    phone_photo = mpo(first, second)
    assert inspect_image(phone_photo, MIB, 10**6).format == "JPEG"
    assert decoded_like_cv2_imread(phone_photo, tmp_path)
    # A cut first picture is refused even though a complete second one follows it.
    second_start = phone_photo.find(b"\xff\xd8", 2)
    broken = phone_photo[: second_start // 2] + phone_photo[second_start:]
    with pytest.raises(InvalidImageError) as caught:
        inspect_image(broken, MIB, 10**6)
    assert caught.value.code == "image.truncated"


@pytest.mark.parametrize(
    "trailer",
    [
        # A Motion Photo's video: marker-like bytes, a scan marker, and no EOI at the end.
        b"\x00\x00\x00\x18ftypmp42" + b"\xff\xda\x12\x34" * 50 + b"\x00" * 300,
        b"\xff\xd9" + b"\x00" * 10,  # a stray EOI after the real one
        b"\x00" * 4096,  # camera padding
    ],
)
def test_jpeg_with_data_after_its_image_is_accepted(trailer, tmp_path):
    photo = astronaut_jpeg() + trailer
    assert inspect_image(photo, MIB, 10**6).format == "JPEG"
    assert decoded_like_cv2_imread(photo, tmp_path)


def test_headers_pillow_recognises_but_cannot_read_get_a_typed_error():
    # Pillow raises NotImplementedError for this DDS header; it must not escape untyped.
    with pytest.raises(InvalidImageError) as caught:
        decode_image(dds_header(), MIB, 10**6)
    assert caught.value.code == "image.not_an_image"


def test_pixel_bomb_is_refused_from_its_header():
    with pytest.raises(InvalidImageError) as caught:
        decode_image(png_claiming(50_000, 50_000), 10 * MIB, 40_000_000)
    assert caught.value.code == "image.too_many_pixels"
    assert "50000x50000" in caught.value.message


def test_limits_on_bytes_and_pixels():
    photo = astronaut_jpeg()  # 512x512
    with pytest.raises(InvalidImageError, match="the limit is 1024") as too_big:
        inspect_image(photo, 1024, 10**6)
    assert too_big.value.code == "image.too_large"
    with pytest.raises(InvalidImageError, match="262144 pixels") as too_many:
        inspect_image(photo, MIB, 262_143)
    assert too_many.value.code == "image.too_many_pixels"
    assert inspect_image(photo, MIB, 262_144).pixels == 262_144


def test_unsupported_format_is_named():
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, "GIF")
    with pytest.raises(InvalidImageError) as caught:
        inspect_image(gif.getvalue(), MIB, 10**6)
    assert caught.value.code == "image.unsupported_format"
    assert "GIF images are not supported" in caught.value.message


def pillow_tiff(compression: str | None) -> bytes:
    """The astronaut as a TIFF that Pillow writes (strips; compressed or not)."""
    out = io.BytesIO()
    picture = cv2.cvtColor(cv2.imdecode(np.frombuffer(astronaut_jpeg(), np.uint8), 1), 4)
    Image.fromarray(picture).save(out, "TIFF", compression=compression)
    return out.getvalue()


@pytest.mark.parametrize("compression", [None, "tiff_lzw", "tiff_adobe_deflate", "packbits"])
def test_tiff_decodes_like_cv2_imread(compression, tmp_path):
    tiff = pillow_tiff(compression)
    assert inspect_image(tiff, MIB, 10**6) == ImageInfo("TIFF", 512, 512)
    assert decoded_like_cv2_imread(tiff, tmp_path)


def test_tiff_whose_pixel_data_is_cut_off_is_refused():
    tiff = pillow_tiff(None)  # Pillow writes the header first, the pixels after it
    with pytest.raises(InvalidImageError) as caught:
        inspect_image(tiff[: len(tiff) - 100], MIB, 10**6)
    assert caught.value.code == "image.truncated"


def test_tiff_pixel_bomb_is_refused_from_its_header():
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, "TIFF")
    tiff = bytearray(out.getvalue())
    # ImageWidth and ImageLength (tags 256, 257) rewritten to 60000 x 60000.
    header = Image.open(io.BytesIO(bytes(tiff)))
    assert header.size == (8, 8)
    for tag in (256, 257):  # stored as LONG (type 4), one value
        entry = tiff.find(tag.to_bytes(2, "little") + b"\x04\x00\x01\x00\x00\x00")
        assert entry > 0
        tiff[entry + 8 : entry + 12] = (60000).to_bytes(4, "little")
    with pytest.raises(InvalidImageError) as caught:
        inspect_image(bytes(tiff), MIB, 40_000_000)
    assert caught.value.code == "image.too_many_pixels"


@pytest.mark.parametrize("request_id", ["a", "req-1", "2026.11.22:batch_7", "x" * 128])
def test_good_request_ids(request_id):
    assert check_request_id(request_id) == request_id


@pytest.mark.parametrize("request_id", ["", "-leading-dash", "has space", "x" * 129, "é"])
def test_bad_request_ids(request_id):
    with pytest.raises(InvalidRequestError) as caught:
        check_request_id(request_id)
    assert caught.value.code == "request.bad_id"


INSTALLED = ("opencv", "mtcnn", "skip")


def test_request_options_default_and_validate():
    limits = RequestLimits(MIB, 1_000_000, ("age", "emotion"), "opencv", INSTALLED)
    assert resolve_options([], "", limits) == (("age", "emotion"), "opencv")
    assert resolve_options(["emotion", "emotion"], "mtcnn", limits) == (
        ("emotion",),
        "mtcnn",
    )
    with pytest.raises(InvalidRequestError, match="unknown action") as unknown:
        resolve_options(["smile"], "", limits)
    assert unknown.value.code == "request.unknown_action"
    with pytest.raises(InvalidRequestError, match="FACESTREAM_ACTIONS") as disabled:
        resolve_options(["race"], "", limits)
    assert disabled.value.code == "request.action_disabled"
    with pytest.raises(InvalidRequestError, match="unknown detector") as detector:
        resolve_options([], "yolo", limits)
    assert detector.value.code == "request.unknown_detector"
    # A known detector whose files are not installed is refused before anything downloads.
    with pytest.raises(InvalidRequestError, match="models download --detectors ssd") as missing:
        resolve_options([], "ssd", limits)
    assert missing.value.code == "request.detector_unavailable"
