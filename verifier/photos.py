"""A consumer's photo of a suspect product, minimised: upright, no metadata, at most 1600 px, JPEG.

Pure: bytes in, bytes out. What a phone writes into a photo (GPS position, the phone's make and serial,
the time, a thumbnail of the uncropped picture) is the reporter's, not the product's: none of it is kept.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from PIL import Image, ImageOps

TOO_LARGE = "too-large"
NOT_AN_IMAGE = "not-an-image"
TOO_MANY_PIXELS = "too-many-pixels"

MEDIA_TYPE = "image/jpeg"
QUALITY = 85
# A 48-megapixel phone photo (8000 x 6000) passes; decoding more would cost a worker hundreds of MB.
MAX_PIXELS = 50_000_000
# The decoders tried, and no others: every format Pillow can parse is code an attacker can reach.
# HEIF is read only if a plugin (pillow-heif) has registered it. The JPEG decoder also opens MPO, how
# iPhones and many cameras write a JPEG with a second picture (depth, HDR gain map) after it.
FORMATS = ("JPEG", "PNG", "WEBP", "HEIF")
BACKGROUND = (255, 255, 255)  # what transparency becomes: JPEG has none, and black would hide a dark label


class PhotoRejected(ValueError):
    """A photo refused; `reason` is "too-large", "not-an-image" or "too-many-pixels"."""

    def __init__(self, reason: str, message: str = ""):
        super().__init__(message or reason)
        self.reason = reason


@dataclass(frozen=True)
class Photo:
    """A minimised photo: JPEG bytes, their media type and SHA-256 (hex), and its size in pixels."""

    data: bytes
    media_type: str
    sha256: str
    width: int
    height: int


def minimise_photo(
    data: bytes, max_bytes: int = 4_000_000, max_side: int = 1600, *, max_pixels: int = MAX_PIXELS
) -> Photo:
    """The photo upright, stripped of all metadata, scaled to fit max_side and re-encoded as JPEG."""
    if len(data) > max_bytes:
        raise PhotoRejected(TOO_LARGE, f"a photo is at most {max_bytes} bytes, this one is {len(data)}")
    image = _decode(data, max_side, max_pixels)
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    # A new image from the pixels alone: Pillow's JPEG writer copies a comment and XMP from `info`.
    clean = Image.frombytes("RGB", image.size, image.tobytes())
    out = io.BytesIO()
    clean.save(out, "JPEG", quality=QUALITY)
    encoded = out.getvalue()
    return Photo(encoded, MEDIA_TYPE, hashlib.sha256(encoded).hexdigest(), clean.width, clean.height)


def _decode(data: bytes, max_side: int, max_pixels: int) -> Image.Image:
    """The first picture in `data` as upright RGB, its size checked from the header before decoding."""
    Image.init()  # Pillow registers its formats lazily; Image.open refuses a name not registered
    formats = [name for name in FORMATS if name in Image.ID]
    try:
        opened = Image.open(io.BytesIO(data), formats=formats)  # reads the header only
    except Image.DecompressionBombError as error:  # Pillow's own limit, twice Image.MAX_IMAGE_PIXELS
        raise PhotoRejected(TOO_MANY_PIXELS, str(error)) from None
    except Exception:  # noqa: BLE001 - Pillow's parsers raise many types on hostile input
        raise PhotoRejected(NOT_AN_IMAGE, "not a JPEG, PNG, WebP or HEIC image") from None
    with opened:
        width, height = opened.size
        if width * height > max_pixels:
            raise PhotoRejected(TOO_MANY_PIXELS, f"{width} x {height} pixels is more than {max_pixels}")
        try:
            if opened.format in ("JPEG", "MPO"):
                opened.draft("RGB", (max_side, max_side))  # libjpeg decodes at 1/2, 1/4 or 1/8 scale
            opened.load()  # a truncated file fails here (ImageFile.LOAD_TRUNCATED_IMAGES is off)
            upright = ImageOps.exif_transpose(opened)
            return _rgb(upright)
        except Exception:  # noqa: BLE001 - as above: a decoder's failure is a bad file
            raise PhotoRejected(NOT_AN_IMAGE, "the image data is damaged or incomplete") from None


def _rgb(image: Image.Image) -> Image.Image:
    """RGB pixels: transparency over white, 16-bit grey scaled to 8 bits (a plain convert would clip it)."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        image = image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, BACKGROUND)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")
