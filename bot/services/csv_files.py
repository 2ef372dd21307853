"""CSV files as spreadsheets export them: UTF-8 (with or without a BOM), UTF-16 (Excel's "Unicode text"),
Windows-1252 (Excel's plain "CSV" on Windows); separated by `,`, `;` (where `,` is the decimal mark) or tabs."""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass

DELIMITERS = (",", ";", "\t")
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


class FileError(ValueError):
    """The file as a whole cannot be read (its encoding, its header)."""


def decode(data: bytes) -> str:
    """The text of a CSV file: a BOM decides; else NULs in alternate bytes mean UTF-16; else UTF-8; else cp1252."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _decoded(data, encoding)
    if utf16 := _utf16_without_bom(data[:4096]):
        return _decoded(data, utf16)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return _decoded(data, "cp1252")


def _utf16_without_bom(head: bytes) -> str | None:
    """ASCII text in UTF-16 has a NUL beside every character: after it (little-endian) or before it (big)."""
    pairs = len(head) // 2
    if pairs == 0:
        return None
    even, odd = head[0:pairs * 2:2].count(0), head[1:pairs * 2:2].count(0)
    if odd > pairs * 0.4 and even == 0:
        return "utf-16-le"
    if even > pairs * 0.4 and odd == 0:
        return "utf-16-be"
    return None


def _decoded(data: bytes, encoding: str) -> str:
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise FileError(f"line 1: not text in UTF-8, UTF-16 or Windows-1252 (byte {exc.start})") from exc
    if "\0" in text:
        raise FileError("line 1: not a text file (it contains NUL characters)")
    return text


def delimiter(header_line: str, known_columns: set[str]) -> str:
    """The separator that splits the header into the most known column names (`,` when none does)."""
    def known(candidate: str) -> int:
        names = next(csv.reader([header_line], delimiter=candidate), [])
        return sum(name.strip().lower() in known_columns for name in names)

    return max(DELIMITERS, key=known)  # max keeps the first of equals: `,`


@dataclass(frozen=True, slots=True)
class Row:
    line: int  # where the row ends in the file, for messages
    cells: dict[str, str]  # only the columns the file has
    problem: str | None = None  # the row's shape is wrong (more cells than the header)


@dataclass(frozen=True, slots=True)
class Table:
    columns: tuple[str, ...]  # as in the header, trimmed and in lower case
    rows: Iterator[Row]


def table(text: str, known_columns: set[str]) -> Table:
    """The header and the rows of a CSV text; a row shorter than the header has empty cells at its end."""
    first_line = text.split("\n", 1)[0]
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter(first_line, known_columns))
    columns = tuple(name.strip().lower() for name in next(reader, None) or ())
    if not any(columns):
        raise FileError("line 1: the header row is missing")
    if repeated := sorted({c for c in columns if columns.count(c) > 1}):
        raise FileError(f"line 1: column {', '.join(repeated)} appears twice")

    def rows() -> Iterator[Row]:
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue  # a blank line, or a spreadsheet's empty row (`;;;`)
            if any(cell.strip() for cell in cells[len(columns):]):
                yield Row(reader.line_num, {}, f"{len(cells)} cells, the header has {len(columns)}")
                continue
            yield Row(reader.line_num, dict(zip(columns, cells + [""] * (len(columns) - len(cells)), strict=False)))

    return Table(columns=columns, rows=rows())
