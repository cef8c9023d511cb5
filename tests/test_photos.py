"""A consumer's photo, minimised: upright, no metadata at all, at most 1600 px, JPEG; bad files refused."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib

import pytest
from PIL import ExifTags, Image

from verifier import photos
from verifier.photos import PhotoRejected, minimise_photo

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def upright_picture() -> Image.Image:
    """80 x 120, portrait: top left red, top right green, the bottom half blue."""
    image = Image.new("RGB", (80, 120), BLUE)
    image.paste(RED, (0, 0, 40, 60))
    image.paste(GREEN, (40, 0, 80, 60))
    return image


def near(pixel, colour, tolerance=40):
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour))


def opened(photo: photos.Photo) -> Image.Image:
    image = Image.open(io.BytesIO(photo.data))
    assert image.format == "JPEG" and image.size == (photo.width, photo.height)
    return image


def jpeg_markers(data: bytes) -> list[int]:
    """The markers of a JPEG's header segments, up to the start of scan."""
    assert data[:2] == b"\xff\xd8"
    markers, at = [], 2
    while True:
        marker = data[at + 1]
        markers.append(marker)
        if marker == 0xDA:  # start of scan: the compressed data follows
            return markers
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        at += 2 + length


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels and whose image data is garbage."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"not zlib") + chunk(b"IEND", b"")


def phone_photo() -> bytes:
    """A JPEG as a phone writes it: GPS position, make and model, a comment, XMP and an ICC profile."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "PhoneMaker"
    exif[ExifTags.Base.Model] = "Phone 12"
    exif[ExifTags.Base.DateTime] = "2025:03:14 15:09:26"
    exif[ExifTags.IFD.GPSInfo] = {
        ExifTags.GPS.GPSLatitudeRef: "N",
        ExifTags.GPS.GPSLatitude: (30.0, 39.0, 36.0),
        ExifTags.GPS.GPSLongitudeRef: "E",
        ExifTags.GPS.GPSLongitude: (104.0, 4.0, 12.0),
    }
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF>secret-place</rdf:RDF></x:xmpmeta>'
    return encode(
        upright_picture(), "JPEG", exif=exif, comment=b"secret-comment", xmp=xmp, icc_profile=b"secret-icc" * 20
    )


# --- metadata ------------------------------------------------------------------------------------


def test_the_phone_photo_really_carries_what_must_go():
    source = Image.open(io.BytesIO(phone_photo()))
    assert source.getexif().get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitudeRef] == "N"
    assert source.getexif()[ExifTags.Base.Make] == "PhoneMaker"
    assert {"comment", "icc_profile", "xmp"} <= set(source.info)


def test_a_jpeg_with_gps_comes_out_with_no_metadata_at_all():
    photo = minimise_photo(phone_photo())
    image = opened(photo)
    assert dict(image.getexif()) == {}
    assert image.getexif().get_ifd(ExifTags.IFD.GPSInfo) == {}
    assert not {"exif", "comment", "icc_profile", "xmp"} & set(image.info)
    # Only JFIF (APP0), tables and the frame: no APP1 (EXIF, XMP), APP2 (ICC), other APPn or COM segment.
    assert set(jpeg_markers(photo.data)) <= {0xE0, 0xDB, 0xC0, 0xC4, 0xDA}
    for secret in (b"PhoneMaker", b"secret", b"Exif", b"xmpmeta"):
        assert secret not in photo.data


def test_the_picture_survives_the_cleaning():
    image = opened(minimise_photo(phone_photo())).convert("RGB")
    assert image.size == (80, 120)
    assert near(image.getpixel((10, 10)), RED) and near(image.getpixel((70, 10)), GREEN)
    assert near(image.getpixel((40, 110)), BLUE)


# --- orientation -------------------------------------------------------------------------------

# What a camera stores for each EXIF orientation, given the upright picture (the inverse of the turn the
# viewer applies): 6 is a phone held upright, its sensor's picture stored turned a quarter anticlockwise.
STORED = {
    1: lambda image: image,
    2: lambda image: image.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    3: lambda image: image.transpose(Image.Transpose.ROTATE_180),
    6: lambda image: image.transpose(Image.Transpose.ROTATE_90),
    8: lambda image: image.transpose(Image.Transpose.ROTATE_270),
}


@pytest.mark.parametrize("orientation", STORED, ids=lambda n: f"orientation-{n}")
def test_the_exif_orientation_is_applied(orientation):
    stored = STORED[orientation](upright_picture())
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    image = opened(minimise_photo(encode(stored, "JPEG", exif=exif, quality=95))).convert("RGB")
    assert image.size == (80, 120)
    assert near(image.getpixel((10, 10)), RED), "top left"
    assert near(image.getpixel((70, 10)), GREEN), "top right"
    assert near(image.getpixel((10, 110)), BLUE) and near(image.getpixel((70, 110)), BLUE), "bottom"
    assert ExifTags.Base.Orientation not in image.getexif()  # applied, so not to be applied again


# --- formats -----------------------------------------------------------------------------------


def test_a_png_with_alpha_becomes_a_jpeg_over_white():
    image = Image.new("RGBA", (60, 40), (0, 0, 0, 0))
    image.paste((255, 0, 0, 255), (0, 0, 30, 40))
    photo = minimise_photo(encode(image, "PNG"))
    assert photo.media_type == "image/jpeg"
    out = opened(photo)
    assert out.mode == "RGB"
    assert near(out.getpixel((10, 20)), RED) and near(out.getpixel((50, 20)), WHITE)


@pytest.mark.parametrize(
    "image, fmt, options",
    [
        pytest.param(upright_picture(), "PNG", {}, id="png-rgb"),
        pytest.param(upright_picture().convert("P"), "PNG", {}, id="png-palette"),
        pytest.param(upright_picture().convert("L"), "PNG", {}, id="png-grey"),
        pytest.param(upright_picture(), "WEBP", {"lossless": True}, id="webp"),
        pytest.param(upright_picture().convert("RGBA"), "WEBP", {"lossless": True}, id="webp-with-alpha"),
        pytest.param(upright_picture().convert("CMYK"), "JPEG", {}, id="jpeg-cmyk"),
        pytest.param(
            upright_picture(), "MPO", {"save_all": True, "append_images": [Image.new("RGB", (8, 8))]}, id="mpo"
        ),
    ],
)
def test_accepted_formats_keep_the_picture(image, fmt, options):
    source = image.convert("RGB")
    out = opened(minimise_photo(encode(image, fmt, **options))).convert("RGB")
    assert out.size == (80, 120)
    for point in ((10, 10), (70, 10), (40, 110)):
        assert near(out.getpixel(point), source.getpixel(point)), point


def test_sixteen_bit_grey_is_scaled_not_clipped():
    image = Image.new("I;16", (20, 20), 32768)  # mid grey in 16 bits
    out = opened(minimise_photo(encode(image, "PNG"))).convert("L")
    assert abs(out.getpixel((10, 10)) - 128) <= 2


def test_it_is_jpeg_quality_85():
    picture = upright_picture()
    expected = Image.open(io.BytesIO(encode(picture, "JPEG", quality=85))).quantization
    assert opened(minimise_photo(encode(picture, "PNG"))).quantization == expected


# --- size --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size, max_side, expected",
    [
        pytest.param((4000, 1000), 1600, (1600, 400), id="wide-to-1600"),
        pytest.param((1200, 3000), 1600, (640, 1600), id="tall-to-1600"),
        pytest.param((1600, 1600), 1600, (1600, 1600), id="exactly-1600"),
        pytest.param((100, 50), 1600, (100, 50), id="small-is-not-enlarged"),
        pytest.param((400, 200), 100, (100, 50), id="another-max-side"),
    ],
)
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_it_is_scaled_to_fit_max_side(size, max_side, expected, fmt):
    photo = minimise_photo(encode(Image.new("RGB", size, GREEN), fmt), max_side=max_side)
    assert (photo.width, photo.height) == expected
    assert opened(photo).size == expected


def test_the_sha256_is_of_the_output_bytes_and_the_output_is_deterministic():
    photo = minimise_photo(phone_photo())
    assert photo.sha256 == hashlib.sha256(photo.data).hexdigest()
    assert minimise_photo(phone_photo()) == photo


def test_at_most_max_bytes_is_accepted():
    data = encode(upright_picture(), "PNG")
    assert minimise_photo(data, max_bytes=len(data)).width == 80
    with pytest.raises(PhotoRejected) as refused:
        minimise_photo(data, max_bytes=len(data) - 1)
    assert refused.value.reason == "too-large"


# --- refusals ----------------------------------------------------------------------------------


def truncated_jpeg() -> bytes:
    data = encode(Image.effect_noise((400, 400), 64).convert("RGB"), "JPEG")
    return data[: len(data) // 2]


def gif() -> bytes:
    return encode(upright_picture(), "GIF")


def bmp() -> bytes:
    return encode(upright_picture(), "BMP")


def truncated_png() -> bytes:
    data = encode(Image.effect_noise((200, 200), 64), "PNG")
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    "data, reason",
    [
        pytest.param(b"", "not-an-image", id="empty"),
        pytest.param(b"hello, this is not a photo", "not-an-image", id="text"),
        pytest.param(bytes(range(256)) * 16, "not-an-image", id="garbage"),
        pytest.param(b"\xff\xd8\xff\xe0" + b"\x00" * 100, "not-an-image", id="a-jpeg-start-and-nothing"),
        pytest.param(truncated_jpeg(), "not-an-image", id="truncated-jpeg"),
        pytest.param(truncated_png(), "not-an-image", id="truncated-png"),
        pytest.param(gif(), "not-an-image", id="gif-is-not-accepted"),
        pytest.param(bmp(), "not-an-image", id="bmp-is-not-accepted"),
        pytest.param(b"%PDF-1.7\n" + b"x" * 100, "not-an-image", id="pdf"),
        pytest.param(png_header(8000, 7000), "too-many-pixels", id="56-megapixels"),
        pytest.param(png_header(100_000, 100_000), "too-many-pixels", id="10-gigapixels-pillows-own-limit"),
        pytest.param(png_header(1, 60_000_000), "too-many-pixels", id="one-pixel-wide"),
        pytest.param(b"\x00" * 4_000_001, "too-large", id="over-4-mb"),
    ],
)
def test_a_bad_file_is_refused_with_its_reason(data, reason):
    with pytest.raises(PhotoRejected) as refused:
        minimise_photo(data)
    assert refused.value.reason == reason
    assert isinstance(refused.value, ValueError)


def test_the_pixel_limit_is_checked_before_decoding(monkeypatch):
    def load(self):
        raise AssertionError("decoded")

    monkeypatch.setattr(Image.Image, "load", load)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", load)
    with pytest.raises(PhotoRejected) as refused:
        minimise_photo(png_header(8000, 7000))
    assert refused.value.reason == "too-many-pixels"


def test_the_pixel_limit_is_a_parameter():
    data = encode(Image.new("RGB", (100, 100)), "PNG")
    assert minimise_photo(data, max_pixels=10_000).width == 100
    with pytest.raises(PhotoRejected, match="100 x 100 pixels"):
        minimise_photo(data, max_pixels=9_999)


def heic_header() -> bytes:
    """The start of an HEIC file (an ISO media ftyp box with brand heic) and no picture."""
    return struct.pack(">I", 24) + b"ftypheic" + b"\x00\x00\x00\x00" + b"mif1heic" + b"\x00" * 64


def test_heic_is_read_only_through_a_plugin():
    if "HEIF" in Image.OPEN:
        pytest.skip("a HEIF plugin is registered")
    with pytest.raises(PhotoRejected) as refused:
        minimise_photo(heic_header())
    assert refused.value.reason == "not-an-image"


def test_a_large_turned_jpeg_is_decoded_small_and_comes_out_upright():
    upright = upright_picture().resize((4800, 7200), Image.Resampling.NEAREST)  # 34.6 megapixels
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    photo = minimise_photo(encode(STORED[6](upright), "JPEG", exif=exif), max_bytes=10_000_000)
    image = opened(photo).convert("RGB")
    assert image.size == (1067, 1600)
    assert near(image.getpixel((100, 100)), RED) and near(image.getpixel((960, 100)), GREEN)
    assert near(image.getpixel((533, 1500)), BLUE)
