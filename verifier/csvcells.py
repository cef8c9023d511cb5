"""Cells for every CSV the product writes: safe to open in a spreadsheet, serials kept exact.

A cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage return is a formula to Excel,
LibreOffice and WPS (CSV injection, OWASP): such text cells get a leading apostrophe. Long digit
strings (serials: 16 digits, leading zeros) are turned into numbers by spreadsheets, which drop the
zeros and round past 15 digits; `text_digits` writes them so that spreadsheets keep them as text.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import IO

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    """`value`, with a leading apostrophe if a spreadsheet would read it as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def text_digits(digits: str) -> str:
    """A digit string that spreadsheets keep as text: a leading tab, which they do not show."""
    return "\t" + digits


def plain_cell(value: str, *, digits: bool = False) -> str:
    """The exact value of a cell this module wrote: `text_digits`' tab or `safe_cell`'s apostrophe undone."""
    if digits and value.startswith("\t"):
        return value[1:]
    if value.startswith("'") and value[1:].startswith(FORMULA_PREFIXES):
        return value[1:]
    return value


def writer(fh: IO[str]) -> SafeWriter:
    """A csv writer whose rows are neutralised cell by cell."""
    return SafeWriter(fh)


class SafeWriter:
    """csv.writer with every field quoted (so a tab-led serial stays one field) and safe cells."""

    def __init__(self, fh: IO[str]):
        self._writer = csv.writer(fh, quoting=csv.QUOTE_ALL, lineterminator="\r\n")

    def writerow(self, row: Iterable[object], *, text_columns: frozenset[int] = frozenset()) -> None:
        """Write one row; columns in `text_columns` are digit strings written with `text_digits`."""
        cells: list[object] = []
        for index, value in enumerate(row):
            if index in text_columns and value is not None:
                cells.append(text_digits(str(value)))
            else:
                cells.append(safe_cell(value))
        self._writer.writerow(cells)
