"""QR matrices for label URLs.

zxing-cpp's native encoder (libzint) chooses the mask in C: ~2,000 codes/s a core, where the
qrcode library's pure-Python mask search costs ~20 ms a code (measured in scripts/bench_issue.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import zxingcpp

QUIET_ZONE = 4  # modules of white around the symbol, as ISO/IEC 18004 requires


@dataclass(frozen=True)
class QrMatrix:
    """A QR symbol without quiet zone: `size` × `size` modules, row-major, 1 = dark."""

    size: int
    modules: bytes

    @property
    def version(self) -> int:
        return (self.size - 17) // 4

    def rows(self) -> list[bytes]:
        return [self.modules[r * self.size : (r + 1) * self.size] for r in range(self.size)]


def encode(text: str, error_correction: str = "M") -> QrMatrix:
    """The QR matrix of `text` at error correction level L, M, Q or H."""
    barcode = zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.QRCode, ec_level=error_correction)
    image = barcode.to_image(scale=1, add_quiet_zones=False)
    size = image.shape[0]
    # zxing's Image has the buffer protocol; its stub only declares __array_interface__
    return QrMatrix(size, bytes(memoryview(image)).translate(_DARK))  # type: ignore[arg-type]


_DARK = bytes([1 if value < 128 else 0 for value in range(256)])  # zxing draws dark as 0
