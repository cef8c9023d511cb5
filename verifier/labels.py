"""Printable labels: QR PNG (with its dpi), SVG in millimetres, label PNGs, and A4 PDF sheets of labels.

A PDF label holds the mark's name, the enterprise, the product and lot, the QR code, the printed
code, where to type it in (the lookup's host), and with PINs a scratch-off box. `plan_label` lays
that out once per batch and refuses a label size that cannot hold it, naming the smallest that can.
"""

from __future__ import annotations

import functools
import io
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageFont

from .qr import QUIET_ZONE, QrMatrix

MM_PER_INCH = 25.4
PT_PER_MM = 72 / MM_PER_INCH
A4_MM = (210.0, 297.0)


def qr_image(matrix: QrMatrix, module_px: int = 1) -> Image.Image:
    """A 1-bit image of the symbol with its quiet zone, `module_px` pixels a module."""
    side = matrix.size + 2 * QUIET_ZONE
    white = b"\xff" * side
    pad = b"\xff" * QUIET_ZONE
    rows = [white] * QUIET_ZONE
    rows += [pad + bytes(0 if m else 255 for m in row) + pad for row in matrix.rows()]
    rows += [white] * QUIET_ZONE
    image = Image.frombytes("L", (side, side), b"".join(rows))
    if module_px > 1:
        image = image.resize((side * module_px, side * module_px), Image.Resampling.NEAREST)
    return image.convert("1")


def module_px_for(matrix: QrMatrix, qr_mm: float, dpi: int) -> int:
    """Whole pixels a module so the symbol with quiet zone is about `qr_mm` wide at `dpi`."""
    return max(1, round(qr_mm / MM_PER_INCH * dpi / (matrix.size + 2 * QUIET_ZONE)))


def png_bytes(matrix: QrMatrix, qr_mm: float = 20.0, dpi: int = 300) -> bytes:
    """A PNG of the symbol sized for printing at `dpi`, which it records in its pHYs chunk."""
    buffer = io.BytesIO()
    qr_image(matrix, module_px_for(matrix, qr_mm, dpi)).save(buffer, "PNG", dpi=(dpi, dpi), optimize=False)
    return buffer.getvalue()


def svg_text(matrix: QrMatrix, qr_mm: float = 20.0, title: str = "") -> str:
    """An SVG of the symbol, `qr_mm` wide including the quiet zone, one path of dark runs."""
    side = matrix.size + 2 * QUIET_ZONE
    parts = []
    for y, row in enumerate(matrix.rows()):
        x = 0
        while x < matrix.size:
            if row[x]:
                start = x
                while x < matrix.size and row[x]:
                    x += 1
                parts.append(f"M{start + QUIET_ZONE} {y + QUIET_ZONE}h{x - start}v1h-{x - start}z")
            else:
                x += 1
    title_xml = f"<title>{_xml_escape(title)}</title>" if title else ""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{qr_mm:g}mm" height="{qr_mm:g}mm" '
        f'viewBox="0 0 {side} {side}" shape-rendering="crispEdges">{title_xml}'
        f'<rect width="{side}" height="{side}" fill="#fff"/><path d="{"".join(parts)}" fill="#000"/></svg>\n'
    )


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


@dataclass(frozen=True)
class SheetLayout:
    """Labels of `label_mm` in a grid on A4, with margins and gaps in millimetres."""

    label_mm: tuple[float, float] = (40.0, 30.0)
    margin_mm: float = 10.0
    gap_mm: float = 2.0
    page_mm: tuple[float, float] = A4_MM

    @property
    def columns(self) -> int:
        return int((self.page_mm[0] - 2 * self.margin_mm + self.gap_mm) // (self.label_mm[0] + self.gap_mm))

    @property
    def rows(self) -> int:
        return int((self.page_mm[1] - 2 * self.margin_mm + self.gap_mm) // (self.label_mm[1] + self.gap_mm))

    @property
    def per_page(self) -> int:
        return self.columns * self.rows

    def validate(self) -> None:
        width, height = self.label_mm
        if width < 15 or height < 20:
            raise ValueError("a label must be at least 15 x 20 mm to hold a scannable QR code and its text")
        if self.per_page < 1:
            raise ValueError(f"a {width:g} x {height:g} mm label does not fit on the page")


def parse_label_size(text: str) -> tuple[float, float]:
    """'40x30' -> (40.0, 30.0) millimetres."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*[xX×]\s*(\d+(?:\.\d+)?)\s*(?:mm)?\s*", text)
    if not m:
        raise ValueError(f"label size must look like 40x30 (millimetres), not {text!r}")
    return float(m.group(1)), float(m.group(2))


@dataclass(frozen=True)
class Label:
    """One label's own content: its URL (the QR code), printed code and, with PINs, its PIN."""

    url: str
    human_code: str
    matrix: QrMatrix
    pin: str | None = None


@dataclass(frozen=True)
class LabelText:
    """What every label of a batch prints besides its own code."""

    mark_title: str
    enterprise: str = ""
    product: str = ""  # name and specification
    lot: str = ""
    lookup_host: str = ""  # where a code can be typed in by hand
    pin: bool = False

    def lookup_line(self, chinese: bool = True) -> str:
        if not self.lookup_host:
            return ""
        return (
            f"扫码或登录 {self.lookup_host} 输入防伪码查询"
            if chinese
            else f"Scan, or enter the code at {self.lookup_host}"
        )


def lookup_host(base_url: str) -> str:
    """The host people type a code in at (the lookup's front page), lower case: 'verify.example.cn'."""
    return base_url.split("://", 1)[-1].split("/", 1)[0].lower()


CJK_FONT_CANDIDATES = (  # TrueType outlines, which reportlab can subset and embed
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",  # Debian: fonts-wqy-microhei
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
)
MONO_FONT = "Courier-Bold"  # a standard PDF font: every printed code and PIN is as wide
MONO_TTF_CANDIDATES = ("/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf",)  # for label PNGs


def cjk_font_path(configured: str | None = None) -> str | None:
    """`configured` (VERIFIER_LABEL_FONT, from the caller), else the first CJK TrueType font
    installed, else None."""
    if configured:
        return configured
    return next((path for path in CJK_FONT_CANDIDATES if Path(path).is_file()), None)


@functools.lru_cache(maxsize=4)
def label_font(configured: str | None = None) -> tuple[str, bool]:
    """The font for Chinese label text and whether it is embedded in the PDF.

    A CJK TrueType font (`configured`: VERIFIER_LABEL_FONT, passed by the caller; or one of
    CJK_FONT_CANDIDATES) is subset and embedded, so the print shop sees what we see. Without one, the standard CID font
    STSong-Light is referenced: readers with Asian font support show it, others show nothing.
    """
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfbase.ttfonts import TTFont

    for path in ([configured] if configured else []) + list(CJK_FONT_CANDIDATES):
        if Path(path).is_file():
            try:
                name = "VerifierCJK" if path in CJK_FONT_CANDIDATES else f"VerifierCJK-{Path(path).stem}"
                pdfmetrics.registerFont(TTFont(name, path, subfontIndex=0))
                return name, True
            except Exception as exc:  # noqa: BLE001 - any unusable font file: say which, then fall back
                if configured:
                    raise ValueError(f"VERIFIER_LABEL_FONT {path} is not a usable TrueType font: {exc}") from None
    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    return "STSong-Light", False


# --- the PDF label's layout -----------------------------------------------------------------

MM_PER_PT = MM_PER_INCH / 72
PAD_MM = 1.2  # inside each label's edge
GAP_MM = 1.0  # between the QR code and the column beside it
BAND_GAP_MM = 0.6  # above and below the QR code
MIN_QR_MM = 15.0  # with quiet zone: 0.3 mm modules for a compact (version 6) code
PIN_BOX_PAD_MM = 0.8
CODE_SAMPLE = "0000 0000 0000 00000"
PIN_SAMPLE = "00000000"
# (preferred, smallest) font sizes in points; a line takes the largest that fits its width
TITLE_PT, CODE_PT, LOOKUP_PT, SIDE_PT, PIN_PT, CAPTION_PT = (
    (6.5, 5.0),
    (7.5, 6.5),
    (4.5, 3.5),
    (5.0, 4.0),
    (7.0, 6.0),
    (4.0, 3.5),
)


def _line_mm(size_pt: float) -> float:
    return size_pt * MM_PER_PT * 1.25


@dataclass(frozen=True)
class TextLine:
    """A line of text in a label: x is its left end (its centre if `centred`), y its baseline, in mm
    from the label's top-left corner."""

    text: str
    font: str
    size: float
    x: float
    y: float
    centred: bool = False

    def width_mm(self) -> float:
        from reportlab.pdfbase.pdfmetrics import stringWidth

        return float(stringWidth(self.text, self.font, self.size)) * MM_PER_PT


@dataclass(frozen=True)
class LabelPlan:
    """Where everything goes in a label of `label_mm`; `code` and `pin` are placeholders whose text
    each label replaces (monospaced, so every code is as wide as CODE_SAMPLE)."""

    label_mm: tuple[float, float]
    qr_mm: float
    qr_x: float
    qr_y: float  # top edge
    lines: tuple[TextLine, ...]
    code: TextLine
    pin: TextLine | None = None
    pin_box: tuple[float, float, float, float] | None = None  # x, top, width, height


def _width_mm(text: str, font: str, size: float) -> float:
    from reportlab.pdfbase.pdfmetrics import stringWidth

    return float(stringWidth(text, font, size)) * MM_PER_PT


def _fit(text: str, font: str, sizes: tuple[float, float], width: float) -> float | None:
    """The largest size from preferred down to smallest (quarter points) at which `text` fits."""
    size = sizes[0]
    while size >= sizes[1] - 1e-9:
        if _width_mm(text, font, size) <= width + 1e-9:
            return size
        size -= 0.25
    return None


def plan_label(label_mm: tuple[float, float], text: LabelText, font_path: str | None = None) -> LabelPlan:
    """Lay out a label; ValueError naming the smallest size that holds it if `label_mm` cannot.
    `font_path`: a CJK TrueType font to use (VERIFIER_LABEL_FONT), else an installed one."""
    cjk, _ = label_font(font_path)
    width, height = label_mm
    full = [(t, cjk, TITLE_PT) for t in [text.mark_title] if t]
    full.append((CODE_SAMPLE, MONO_FONT, CODE_PT))
    full += [(t, cjk, LOOKUP_PT) for t in [text.lookup_line()] if t]
    side = [(t, cjk, SIDE_PT) for t in (text.enterprise, text.product, f"批号 {text.lot}" if text.lot else "") if t]
    caption = "刮开涂层 查看PIN"
    pin_box_w = _width_mm(PIN_SAMPLE, MONO_FONT, PIN_PT[1]) + 2 * PIN_BOX_PAD_MM
    pin_box_h = _line_mm(PIN_PT[0]) + PIN_BOX_PAD_MM
    side_h = sum(_line_mm(sizes[0]) for _, _, sizes in side)
    side_w = max([_width_mm(t, f, sizes[1]) for t, f, sizes in side], default=0.0)
    if text.pin:
        side_h += _line_mm(CAPTION_PT[0]) + pin_box_h
        side_w = max(side_w, pin_box_w, _width_mm(caption, cjk, CAPTION_PT[1]))
    beside = GAP_MM + side_w if side_w else 0.0
    band_min = max(MIN_QR_MM, side_h)
    fixed_h = 2 * PAD_MM + 2 * BAND_GAP_MM + sum(_line_mm(sizes[0]) for _, _, sizes in full)
    min_w = max([2 * PAD_MM + _width_mm(t, f, sizes[1]) for t, f, sizes in full] + [2 * PAD_MM + band_min + beside])
    min_h = fixed_h + band_min
    if width < min_w - 1e-9 or height < min_h - 1e-9:
        raise ValueError(
            f"a {width:g} x {height:g} mm label cannot hold its text and a scannable QR code: "
            f"it needs at least {math.ceil(min_w - 1e-9)} x {math.ceil(min_h - 1e-9)} mm "
            "(--label-size)"
        )
    qr_mm = min(height - fixed_h, width - 2 * PAD_MM - beside)
    lines: list[TextLine] = []
    y = PAD_MM
    code: TextLine | None = None

    def full_line(t: str, font: str, sizes: tuple[float, float], top: float) -> TextLine:
        size = _fit(t, font, sizes, width - 2 * PAD_MM)
        assert size is not None
        return TextLine(t, font, size, width / 2, top + _line_mm(sizes[0]) * 0.8, centred=True)

    if text.mark_title:
        lines.append(full_line(text.mark_title, cjk, TITLE_PT, y))
        y += _line_mm(TITLE_PT[0])
    band_top = y + BAND_GAP_MM
    qr_x = PAD_MM if side_w else (width - qr_mm) / 2
    y = band_top + qr_mm + BAND_GAP_MM
    code = full_line(CODE_SAMPLE, MONO_FONT, CODE_PT, y)
    y += _line_mm(CODE_PT[0])
    if text.lookup_line():
        lines.append(full_line(text.lookup_line(), cjk, LOOKUP_PT, y))
    pin = pin_box = None
    if side_w:
        column_x = PAD_MM + qr_mm + GAP_MM
        column_w = width - PAD_MM - column_x
        sy = band_top + (qr_mm - side_h) / 2  # centred beside the QR code
        for t, font, sizes in side:
            size = _fit(t, font, sizes, column_w)
            assert size is not None
            lines.append(TextLine(t, font, size, column_x, sy + _line_mm(sizes[0]) * 0.8))
            sy += _line_mm(sizes[0])
        if text.pin:
            size = _fit(caption, cjk, CAPTION_PT, column_w)
            assert size is not None
            lines.append(TextLine(caption, cjk, size, column_x, sy + _line_mm(CAPTION_PT[0]) * 0.8))
            sy += _line_mm(CAPTION_PT[0])
            box_w = min(column_w, _width_mm(PIN_SAMPLE, MONO_FONT, PIN_PT[0]) + 2 * PIN_BOX_PAD_MM)
            pin_size = _fit(PIN_SAMPLE, MONO_FONT, PIN_PT, box_w - 2 * PIN_BOX_PAD_MM)
            assert pin_size is not None
            pin_box = (column_x, sy, box_w, pin_box_h)
            pin = TextLine(
                PIN_SAMPLE,
                MONO_FONT,
                pin_size,
                column_x + box_w / 2,
                sy + PIN_BOX_PAD_MM / 2 + _line_mm(PIN_PT[0]) * 0.8,
                centred=True,
            )
    return LabelPlan(label_mm, qr_mm, qr_x, band_top, tuple(lines), code, pin, pin_box)


def write_pdf(path: Path, labels: Iterable[Label], layout: SheetLayout, plan: LabelPlan, title: str = "") -> int:
    """A4 sheets of labels laid out by `plan`. Returns the number of pages."""
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    page_w, page_h = layout.page_mm
    pdf = canvas.Canvas(str(path), pagesize=(page_w * PT_PER_MM, page_h * PT_PER_MM), pageCompression=1)
    pdf.setTitle(title)
    pdf.setCreator("verifier")
    label_w, label_h = layout.label_mm
    mm = PT_PER_MM
    pages, slot = 0, 0

    def draw(line: TextLine, text: str, x0: float, top: float) -> None:
        pdf.setFont(line.font, line.size)
        if line.centred:
            pdf.drawCentredString((x0 + line.x) * mm, (top - line.y) * mm, text)
        else:
            pdf.drawString((x0 + line.x) * mm, (top - line.y) * mm, text)

    for label in labels:
        if slot == 0:
            pages += 1
        col, row = slot % layout.columns, slot // layout.columns
        x0 = layout.margin_mm + col * (label_w + layout.gap_mm)
        top = page_h - layout.margin_mm - row * (label_h + layout.gap_mm)
        for line in plan.lines:
            draw(line, line.text, x0, top)
        pdf.drawImage(
            ImageReader(qr_image(label.matrix)),
            (x0 + plan.qr_x) * mm,
            (top - plan.qr_y - plan.qr_mm) * mm,
            plan.qr_mm * mm,
            plan.qr_mm * mm,
        )
        draw(plan.code, label.human_code, x0, top)
        if plan.pin_box and plan.pin and label.pin:
            bx, by, bw, bh = plan.pin_box
            pdf.setLineWidth(0.3)
            pdf.setDash(1, 1)
            pdf.rect((x0 + bx) * mm, (top - by - bh) * mm, bw * mm, bh * mm, stroke=1, fill=0)
            pdf.setDash()
            draw(plan.pin, label.pin, x0, top)
        slot += 1
        if slot == layout.per_page:
            pdf.showPage()
            slot = 0
    if slot:
        pdf.showPage()
    pdf.save()
    return pages


# --- label PNGs: the QR code with its printed code, for design tools and single labels ------------


@functools.lru_cache(maxsize=8)
def _pil_font(kind: str, px: int, font_path: str | None = None) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    cjk = cjk_font_path(font_path)
    paths: list[str | None] = [cjk] if kind == "cjk" else [*MONO_TTF_CANDIDATES, cjk]
    for path in paths:
        if path and Path(path).is_file():
            try:
                return ImageFont.truetype(path, px)
            except OSError:
                continue
    return ImageFont.load_default(px)


def label_png_bytes(
    matrix: QrMatrix,
    human_code: str,
    text: LabelText,
    qr_mm: float = 20.0,
    dpi: int = 300,
    font_path: str | None = None,
) -> bytes:
    """A PNG label: the mark's name above the QR code, the printed code and the lookup host below.

    Without a CJK font the mark's name and the lookup line cannot be drawn in Chinese; pass
    an English `text` then (see `label_png_text`). No PIN: a PNG has no scratch-off layer.
    `font_path`: a CJK TrueType font to use (VERIFIER_LABEL_FONT), else an installed one.
    """
    from PIL import ImageDraw

    px_per_pt = dpi / 72
    qr = qr_image(matrix, module_px_for(matrix, qr_mm, dpi)).convert("L")
    title_font = _pil_font("cjk", round(TITLE_PT[0] * px_per_pt), font_path)
    code_font = _pil_font("mono", round(CODE_PT[0] * px_per_pt), font_path)
    lookup_font = _pil_font("cjk", round(LOOKUP_PT[0] * px_per_pt), font_path)
    lookup = text.lookup_line(chinese=cjk_font_path(font_path) is not None)
    rows: list[tuple[str | None, Any]] = [  # (None, None): where the QR code goes
        (text.mark_title, title_font),
        (None, None),
        (human_code, code_font),
        (lookup, lookup_font),
    ]
    rows = [(t, f) for t, f in rows if t is None or t]
    pad = round(PAD_MM / MM_PER_INCH * dpi)
    widths = [qr.width] + [math.ceil(f.getlength(t)) for t, f in rows if t]
    width = max(widths) + 2 * pad
    heights = [qr.height if t is None else round(f.size * 1.25) for t, f in rows]
    image = Image.new("L", (width, sum(heights) + 2 * pad), 255)
    draw = ImageDraw.Draw(image)
    y = pad
    for (t, f), h in zip(rows, heights):
        if t is None:
            image.paste(qr, ((width - qr.width) // 2, y))
        else:
            draw.text((width / 2, y + h * 0.8), t, font=f, fill=0, anchor="ms")
        y += h
    buffer = io.BytesIO()
    image.save(buffer, "PNG", dpi=(dpi, dpi), optimize=False)
    return buffer.getvalue()


def label_png_text(text: LabelText, mark_name_en: str, font_path: str | None = None) -> LabelText:
    """`text` as a label PNG can draw it: the English mark name when no CJK font is installed."""
    if cjk_font_path(font_path) is not None:
        return text
    return LabelText(mark_name_en, text.enterprise, text.product, text.lot, text.lookup_host, text.pin)
