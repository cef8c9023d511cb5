"""Printable labels: QR PNG (with its dpi), SVG in millimetres, and A4 PDF sheets of labels."""

from __future__ import annotations

import functools
import io
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

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
        image = image.resize((side * module_px, side * module_px), Image.NEAREST)
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

    @property
    def qr_mm(self) -> float:
        """The symbol's width with quiet zone: what is left after two text lines."""
        width, height = self.label_mm
        return min(width - 2.0, height - 8.0)

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
    url: str
    human_code: str
    matrix: QrMatrix


CJK_FONT_CANDIDATES = (  # TrueType outlines, which reportlab can subset and embed
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",  # Debian: fonts-wqy-microhei
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
)


@functools.lru_cache(maxsize=1)
def label_font() -> tuple[str, bool]:
    """The font for Chinese label text and whether it is embedded in the PDF.

    A CJK TrueType font (VERIFIER_LABEL_FONT, or one of CJK_FONT_CANDIDATES) is subset and
    embedded, so the print shop sees what we see. Without one, the standard CID font
    STSong-Light is referenced: readers with Asian font support show it, others show nothing.
    """
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfbase.ttfonts import TTFont

    configured = os.environ.get("VERIFIER_LABEL_FONT")
    for path in ([configured] if configured else []) + list(CJK_FONT_CANDIDATES):
        if Path(path).is_file():
            try:
                pdfmetrics.registerFont(TTFont("VerifierCJK", path, subfontIndex=0))
                return "VerifierCJK", True
            except Exception as exc:  # noqa: BLE001 - any unusable font file: say which, then fall back
                if configured:
                    raise ValueError(f"VERIFIER_LABEL_FONT {path} is not a usable TrueType font: {exc}") from None
    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    return "STSong-Light", False


def write_pdf(path: Path, labels: Iterable[Label], layout: SheetLayout, mark_title: str, subtitle: str = "") -> int:
    """A4 sheets of labels: mark name, QR code, printed code. Returns the number of pages."""
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    font, _ = label_font()
    page_w, page_h = layout.page_mm
    pdf = canvas.Canvas(str(path), pagesize=(page_w * PT_PER_MM, page_h * PT_PER_MM), pageCompression=1)
    pdf.setTitle(mark_title)
    pdf.setCreator("verifier")
    label_w, label_h = layout.label_mm
    qr_mm = layout.qr_mm
    pages, slot = 0, 0
    for label in labels:
        if slot == 0:
            pages += 1
        col, row = slot % layout.columns, slot // layout.columns
        x0 = layout.margin_mm + col * (label_w + layout.gap_mm)
        top = page_h - layout.margin_mm - row * (label_h + layout.gap_mm)
        mm = PT_PER_MM
        pdf.setFont(font, 6.5)
        pdf.drawCentredString((x0 + label_w / 2) * mm, (top - 3.2) * mm, mark_title)
        qr_x = x0 + (label_w - qr_mm) / 2
        qr_y = top - 4.2 - qr_mm
        pdf.drawImage(ImageReader(qr_image(label.matrix)), qr_x * mm, qr_y * mm, qr_mm * mm, qr_mm * mm)
        pdf.setFont("Courier-Bold", 7.5)
        pdf.drawCentredString((x0 + label_w / 2) * mm, (qr_y - 2.6) * mm, label.human_code)
        if subtitle:
            pdf.setFont(font, 5)
            pdf.drawCentredString((x0 + label_w / 2) * mm, (qr_y - 4.6) * mm, subtitle)
        slot += 1
        if slot == layout.per_page:
            pdf.showPage()
            slot = 0
    if slot:
        pdf.showPage()
    pdf.save()
    return pages
