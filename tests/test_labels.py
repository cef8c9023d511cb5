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


TEXT = labels.LabelText(codes.MARKS[1].name_zh, "华茶集团", "绿茶 500g", "L2026-11", labels.lookup_host(BASE), pin=True)


def sheet(keypair, tmp_path, layout: labels.SheetLayout, text: labels.LabelText = TEXT, count: int = 40):
    """A PDF of `count` labels with PINs: (its path, the URLs, the labels)."""
    kid, private = keypair
    signer = codes.compact_signer(private, kid, codes.MARKS[1], 5, BASE)
    urls = [signer(serial) for serial in range(1000, 1000 + count)]
    items = [
        labels.Label(u, codes.human_code(1000 + i), qr.encode(u), f"{12345670 + i:08d}" if text.pin else None)
        for i, u in enumerate(urls)
    ]
    path = tmp_path / "sheet.pdf"
    pages = labels.write_pdf(path, items, layout, labels.plan_label(layout.label_mm, text), text.mark_title)
    assert pages == -(-count // layout.per_page)
    return path, urls, items


def cell_of(layout: labels.SheetLayout, x_pt: float, y_pt: float) -> tuple[float, float, float, float] | None:
    """The label cell (left, bottom, right, top in points) that holds the point, if any."""
    mm = labels.PT_PER_MM
    page_h = layout.page_mm[1]
    for row in range(layout.rows):
        for col in range(layout.columns):
            left = layout.margin_mm + col * (layout.label_mm[0] + layout.gap_mm)
            top = page_h - layout.margin_mm - row * (layout.label_mm[1] + layout.gap_mm)
            box = (left * mm, (top - layout.label_mm[1]) * mm, (left + layout.label_mm[0]) * mm, top * mm)
            if box[0] <= x_pt <= box[2] and box[1] <= y_pt <= box[3]:
                return box
    return None


def assert_every_character_inside_its_label(document, layout: labels.SheetLayout) -> int:
    """Each glyph's box, as pdfium reads it back, lies inside the label cell its centre is in."""
    checked = 0
    for page in document:
        textpage = page.get_textpage()
        for index in range(textpage.count_chars()):
            left, bottom, right, top = textpage.get_charbox(index)
            if right - left <= 0:  # spaces and line ends have no box
                continue
            cell = cell_of(layout, (left + right) / 2, (bottom + top) / 2)
            assert cell is not None, f"a character at {left:.1f},{bottom:.1f} pt is in no label"
            slack = 0.01
            assert (
                cell[0] - slack <= left
                and right <= cell[2] + slack
                and cell[1] - slack <= bottom
                and top <= cell[3] + slack
            )
            checked += 1
    return checked


def test_pdf_sheet_labels_decode_at_300_dpi(keypair, tmp_path):
    layout = labels.SheetLayout()
    path, urls, items = sheet(keypair, tmp_path, layout)  # 32 on the first page, 8 on the second
    assert layout.per_page == 32
    document = pypdfium2.PdfDocument(path)
    width_pt, height_pt = document[0].get_size()
    assert (round(width_pt / 72 * 25.4), round(height_pt / 72 * 25.4)) == (210, 297)  # A4
    found = []
    for page in document:
        found += decode_all(page.render(scale=300 / 72).to_pil())
    assert sorted(found) == sorted(urls)


def test_pdf_label_has_enterprise_lookup_address_and_pin_box(keypair, tmp_path):
    path, urls, items = sheet(keypair, tmp_path, labels.SheetLayout())
    text = pypdfium2.PdfDocument(path)[0].get_textpage().get_text_range()
    for expected in (
        codes.MARKS[1].name_zh,
        "华茶集团",
        "绿茶 500g",
        "批号 L2026-11",
        "刮开涂层",
        "扫码或登录 verify.example.cn 输入防伪码查询",
        items[0].human_code,
        items[0].pin,
    ):
        assert expected in text, expected
    assert text.count("扫码或登录") == 32 and text.count("华茶集团") == 32
    no_pin = labels.LabelText(TEXT.mark_title, TEXT.enterprise, TEXT.product, TEXT.lot, TEXT.lookup_host)
    path, _, items = sheet(keypair, tmp_path, labels.SheetLayout(), no_pin)
    assert "刮开涂层" not in pypdfium2.PdfDocument(path)[0].get_textpage().get_text_range()


@pytest.mark.parametrize(
    "size", [(40.0, 30.0), (35.0, 27.0), (60.0, 40.0), (100.0, 30.0)], ids=lambda s: f"{s[0]:g}x{s[1]:g}"
)
def test_pdf_label_text_stays_inside_each_label(keypair, tmp_path, size):
    """Every line fits its label by reportlab's metrics, and every glyph drawn is inside its cell."""
    from reportlab.pdfbase.pdfmetrics import stringWidth

    layout = labels.SheetLayout(label_mm=size)
    plan = labels.plan_label(size, TEXT)
    assert plan.qr_mm >= labels.MIN_QR_MM
    for line in plan.lines + (plan.code, plan.pin):
        width = stringWidth(line.text, line.font, line.size) / labels.PT_PER_MM
        left = line.x - width / 2 if line.centred else line.x
        assert labels.PAD_MM - 1e-6 <= left and left + width <= size[0] - labels.PAD_MM + 1e-6, line
        assert 0 < line.y <= size[1] - labels.PAD_MM, line
    assert plan.qr_x + plan.qr_mm <= size[0] and plan.qr_y + plan.qr_mm <= size[1]
    path, urls, _ = sheet(keypair, tmp_path, layout, count=min(layout.per_page, 12))
    document = pypdfium2.PdfDocument(path)
    assert assert_every_character_inside_its_label(document, layout) > 12 * 60
    assert sorted(decode_all(document[0].render(scale=300 / 72).to_pil())) == sorted(urls)


@pytest.mark.parametrize("size", [(25.0, 20.0), (40.0, 20.0), (30.0, 30.0)], ids=lambda s: f"{s[0]:g}x{s[1]:g}")
def test_label_too_small_for_its_content_is_refused_naming_the_minimum(size):
    with pytest.raises(
        ValueError, match=r"cannot hold its text and a scannable QR code: it needs at least (\d+) x (\d+) mm"
    ) as caught:
        labels.plan_label(size, TEXT)
    least = tuple(float(v) for v in re.search(r"at least (\d+) x (\d+)", str(caught.value)).groups())
    labels.plan_label(least, TEXT)  # the size it names is enough
    with pytest.raises(ValueError):
        labels.plan_label((least[0] - 1, least[1]), TEXT)
    with pytest.raises(ValueError):
        labels.plan_label((least[0], least[1] - 1), TEXT)


def test_a_long_enterprise_name_needs_a_wider_label():
    long_name = labels.LabelText(
        TEXT.mark_title,
        "杭州西湖区龙井村明前特级茶叶产销合作社有限公司",
        TEXT.product,
        TEXT.lot,
        TEXT.lookup_host,
        pin=True,
    )
    with pytest.raises(ValueError, match=r"a 40 x 30 mm label cannot hold .* at least (4[1-9]|[5-9]\d) x 27 mm"):
        labels.plan_label((40, 30), long_name)


def test_label_png_holds_the_qr_code_the_printed_code_and_the_mark(signed_url):
    from PIL import ImageFont

    human = codes.human_code(3141592653589793)
    data = labels.label_png_bytes(qr.encode(signed_url), human, TEXT)
    image = Image.open(io.BytesIO(data))
    assert image.info["dpi"] == pytest.approx((300, 300), abs=0.1)
    assert decode_all(image) == [signed_url]
    bare = print_size_png(signed_url)
    assert image.width >= bare.width and image.height > bare.height + 60  # text above and below
    for line, font in (
        (TEXT.mark_title, labels._pil_font("cjk", 27)),
        (human, labels._pil_font("mono", 31)),
        (TEXT.lookup_line(), labels._pil_font("cjk", 19)),
    ):
        assert isinstance(font, ImageFont.FreeTypeFont) and font.getlength(line) <= image.width - 2 * 14
    pixels = image.convert("L").load()
    assert all(pixels[x, y] == 255 for x in (0, image.width - 1) for y in range(image.height))  # nothing cut off
    assert decode_all(jpeg(rotated(scaled_to(image, 2, image.width // 5), 10), 40)) == [signed_url]


@pytest.mark.parametrize(
    "text, size", [("40x30", (40.0, 30.0)), ("50 X 35.5 mm", (50.0, 35.5)), ("25×20", (25.0, 20.0))]
)
def test_label_size_parsing(text, size):
    assert labels.parse_label_size(text) == size


@pytest.mark.parametrize("text", ["40", "40x", "ax30", "-40x30"])
def test_bad_label_size_is_a_value_error(text):
    with pytest.raises(ValueError, match="40x30"):
        labels.parse_label_size(text)


def test_layout_refuses_labels_too_small_or_too_large():  # before any text is measured
    with pytest.raises(ValueError, match="at least"):
        labels.SheetLayout(label_mm=(10, 10)).validate()
    with pytest.raises(ValueError, match="does not fit"):
        labels.SheetLayout(label_mm=(300, 30)).validate()
