"""Labels must scan: rendered at print size, degraded like a phone sees them, decoded by zxing-cpp."""

from __future__ import annotations

import io
import random
import re

import pypdfium2
import pytest
import zxingcpp
from PIL import Image, ImageDraw, ImageFilter

from verifier import codes, labels, qr

BASE = "HTTPS://VERIFY.EXAMPLE.CN/"


@pytest.fixture
def signed_url(keypair) -> str:
    kid, private = keypair
    return codes.compact_signer(private, kid, codes.MARKS[0], 12, BASE)(3141592653589793)


def decode_all(image: Image.Image) -> list[str]:
    return [b.text for b in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)]


def print_size_png(url: str) -> Image.Image:
    return Image.open(io.BytesIO(labels.png_bytes(qr.encode(url), qr_mm=20, dpi=300)))


def scaled_to(image: Image.Image, px_per_module: float, modules: int) -> Image.Image:
    side = round(px_per_module * modules)
    return image.convert("L").resize((side, side), Image.BILINEAR)


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.convert("L").save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue()))


def rotated(image: Image.Image, degrees: float) -> Image.Image:
    return image.convert("L").rotate(degrees, resample=Image.BILINEAR, expand=True, fillcolor=255)


def test_the_compact_url_is_a_version_6_symbol(signed_url):
    matrix = qr.encode(signed_url)
    assert (matrix.size, matrix.version) == (41, 6)


def test_png_records_300_dpi_and_its_print_size(signed_url):
    image = print_size_png(signed_url)
    assert image.info["dpi"] == pytest.approx((300, 300), abs=0.1)
    assert image.size[0] / 300 * 25.4 == pytest.approx(20, abs=1.5)  # 20 mm wide with quiet zone


DEGRADATIONS = {
    "print-size-300dpi": lambda im, n: im,
    "2px-per-module": lambda im, n: scaled_to(im, 2, n),
    "rotated-15": lambda im, n: rotated(im, 15),
    "jpeg-q30": lambda im, n: jpeg(im, 30),
    "2px-rotated-15-jpeg-q30": lambda im, n: jpeg(rotated(scaled_to(im, 2, n), 15), 30),
}


@pytest.mark.parametrize("name", DEGRADATIONS)
def test_label_decodes_to_the_issued_url_and_verifies(signed_url, keypair, name):
    kid, private = keypair
    modules = qr.encode(signed_url).size + 2 * qr.QUIET_ZONE
    image = DEGRADATIONS[name](print_size_png(signed_url), modules)
    assert decode_all(image) == [signed_url]
    trusted = {kid: codes.TrustedKey(kid, private.public_key())}
    assert codes.verify(decode_all(image)[0], trusted, [BASE]).genuine


def photo_like_frame(label: Image.Image, seed: int = 7) -> Image.Image:
    """A label on a cluttered, unevenly lit, noisy 'photo' of a product."""
    rng = random.Random(seed)
    frame = Image.new("L", (1400, 1000))
    pixels = frame.load()
    for y in range(frame.height):  # a lighting gradient
        for x in range(0, frame.width, 4):
            value = 90 + int(80 * x / frame.width) + int(40 * y / frame.height)
            for dx in range(4):
                pixels[x + dx, y] = value
    draw = ImageDraw.Draw(frame)
    for _ in range(120):  # packaging clutter: boxes and lines of random greys
        x, y = rng.randrange(frame.width), rng.randrange(frame.height)
        draw.rectangle([x, y, x + rng.randrange(5, 90), y + rng.randrange(5, 60)], fill=rng.randrange(0, 255))
    noise = Image.effect_noise(frame.size, 25)
    frame = Image.blend(frame, noise, 0.25)
    small = label.convert("L").resize((label.width * 2 // 3, label.height * 2 // 3), Image.BILINEAR)
    frame.paste(rotated(small, 9), (520, 330))
    return frame.filter(ImageFilter.GaussianBlur(0.6))


def test_label_inside_a_noisy_photo_like_frame_decodes(signed_url):
    photo = photo_like_frame(print_size_png(signed_url))
    assert decode_all(photo) == [signed_url]


def test_svg_has_print_size_and_the_same_modules(signed_url):
    matrix = qr.encode(signed_url)
    svg = labels.svg_text(matrix, qr_mm=20, title=signed_url)
    assert 'width="20mm"' in svg and 'height="20mm"' in svg and f"<title>{signed_url}</title>" in svg
    side = matrix.size + 2 * qr.QUIET_ZONE
    image = Image.new("L", (side * 6, side * 6), 255)
    draw = ImageDraw.Draw(image)
    for x, y, width in re.findall(r"M(\d+) (\d+)h(\d+)v1h-\d+z", svg):  # rasterise the runs
        x, y, width = int(x), int(y), int(width)
        draw.rectangle([x * 6, y * 6, (x + width) * 6 - 1, y * 6 + 5], fill=0)
    assert decode_all(image) == [signed_url]


def test_pdf_sheet_labels_decode_at_300_dpi(keypair, tmp_path):
    kid, private = keypair
    signer = codes.compact_signer(private, kid, codes.MARKS[1], 5, BASE)
    urls = [signer(serial) for serial in range(1000, 1040)]  # 32 on the first page, 8 on the second
    items = [labels.Label(u, codes.human_code(1000 + i), qr.encode(u)) for i, u in enumerate(urls)]
    layout = labels.SheetLayout()
    pages = labels.write_pdf(tmp_path / "sheet.pdf", items, layout, codes.MARKS[1].name_zh, "绿茶 500g")
    assert pages == 2 and layout.per_page == 32
    document = pypdfium2.PdfDocument(tmp_path / "sheet.pdf")
    width_pt, height_pt = document[0].get_size()
    assert (round(width_pt / 72 * 25.4), round(height_pt / 72 * 25.4)) == (210, 297)  # A4
    found = []
    for page in document:
        found += decode_all(page.render(scale=300 / 72).to_pil())
    assert sorted(found) == sorted(urls)
    text = document[0].get_textpage().get_text_range()
    assert codes.MARKS[1].name_zh in text and codes.human_code(1000) in text


@pytest.mark.parametrize("text, size", [("40x30", (40.0, 30.0)), ("50 X 35.5 mm", (50.0, 35.5)), ("25×20", (25.0, 20.0))])
def test_label_size_parsing(text, size):
    assert labels.parse_label_size(text) == size


@pytest.mark.parametrize("text", ["40", "40x", "ax30", "-40x30"])
def test_bad_label_size_is_a_value_error(text):
    with pytest.raises(ValueError, match="40x30"):
        labels.parse_label_size(text)


def test_layout_refuses_labels_too_small_or_too_large():
    with pytest.raises(ValueError, match="at least"):
        labels.SheetLayout(label_mm=(10, 10)).validate()
    with pytest.raises(ValueError, match="does not fit"):
        labels.SheetLayout(label_mm=(300, 30)).validate()
