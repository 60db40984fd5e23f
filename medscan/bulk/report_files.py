"""Bulk-run report files: the XLSX workbook (Report, Errors, About) and the CSV text (no Flask).

Entry names are attacker-controlled. XLSX text cells are always stored as strings, never as
formulas or error values, and characters XML cannot carry become U+FFFD in both formats (the
same path reads the same everywhere). CSV cells get the ``'`` prefix of ``ReportRow.csv_cells``.
Both writers stream: the workbook is written in openpyxl's write-only mode, so memory stays flat
however many rows there are.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, BinaryIO

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ERROR_CODES
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from medscan.analyzer.report import FAILURE, REPORT_KEYS, ReportRow
from medscan.models import iso_utc

if TYPE_CHECKING:
    from openpyxl.worksheet._write_only import WriteOnlyWorksheet

ERRORS_HEADER = ("path_to_study", "status", "reason")
ABOUT_KEYS: tuple[str, ...] = tuple(
    "run_id file_name created_at finished_at studies succeeded failed skipped"
    " model model_version threshold".split()
)
ABOUT_HEADER = ("key", "value")
SKIPPED = "Skipped"

#: openpyxl's ILLEGAL_CHARACTERS_RE plus what it lets through but XML 1.0 cannot hold (lone
#: surrogates, U+FFFE, U+FFFF): those save fine and leave a workbook no reader can open.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_BOLD = Font(bold=True)
#: Column widths in characters; other columns get max(14, header length + 2).
_WIDTHS = {"path_to_study": 60, "study_uid": 64, "series_uid": 64, "reason": 80, "value": 40}


@dataclass(frozen=True)
class ErrorLine:
    """One row of the Errors sheet: a Failure row's reason or a skipped file."""

    path_to_study: str
    status: str
    reason: str

    def __post_init__(self) -> None:
        if self.status not in (FAILURE, SKIPPED):
            raise ValueError(f"status must be {FAILURE!r} or {SKIPPED!r}, got {self.status!r}")


def write_xlsx(
    target: str | os.PathLike[str] | BinaryIO,
    rows: Iterable[ReportRow],
    errors: Iterable[ErrorLine],
    about: Mapping[str, object],
) -> None:
    """Write the report workbook to ``target``, consuming ``rows``, then ``errors``, once each.

    ``about`` must hold every key of ABOUT_KEYS (None makes an empty cell; other keys are ignored).
    Nothing is written to ``target`` before all rows are in; if anything fails, openpyxl's
    temporary sheet files are removed before the exception propagates.
    """
    missing = [key for key in ABOUT_KEYS if key not in about]
    if missing:
        raise KeyError(f"about lacks {missing}")
    workbook = Workbook(write_only=True)
    try:
        _add_sheet(workbook, "Report", REPORT_KEYS, (row.cells() for row in rows))
        _add_sheet(
            workbook,
            "Errors",
            ERRORS_HEADER,
            ((line.path_to_study, line.status, line.reason) for line in errors),
        )
        _add_sheet(workbook, "About", ABOUT_HEADER, ((key, about[key]) for key in ABOUT_KEYS))
        workbook.save(target)
    except BaseException:
        _discard(workbook)
        raise


def csv_lines(rows: Iterable[ReportRow]) -> Iterator[str]:
    """Yield the CSV text one line at a time ("\\r\\n" endings, no BOM): the header, then rows."""
    writer = csv.writer(_Echo())
    yield writer.writerow(REPORT_KEYS)
    for row in rows:
        yield writer.writerow([_clean(cell) for cell in row.csv_cells()])


class _Echo:
    """A sink whose ``write`` returns its text, so ``csv.writer.writerow`` returns the line."""

    def write(self, text: str) -> str:
        return text


def _add_sheet(
    workbook: Workbook,
    title: str,
    header: Iterable[str],
    values: Iterable[Iterable[object]],
) -> None:
    """Append a sheet with a bold, frozen header row, then one row per item of ``values``."""
    sheet = workbook.create_sheet(title)
    sheet.freeze_panes = "A2"
    header_cells = []
    for column, name in enumerate(header, 1):
        sheet.column_dimensions[get_column_letter(column)].width = _WIDTHS.get(
            name, max(14, len(name) + 2)
        )
        cell = WriteOnlyCell(sheet, name)
        cell.font = _BOLD
        header_cells.append(cell)
    sheet.append(header_cells)
    for row in values:
        sheet.append([_cell(sheet, value) for value in row])


def _cell(sheet: WriteOnlyWorksheet, value: object) -> object:
    """``value`` as openpyxl should store it: numbers and None native, all else as text."""
    if value is None or isinstance(value, int | float):
        return value
    if isinstance(value, datetime):
        value = iso_utc(value)
    text = _clean(str(value))
    if text.startswith("=") or text in ERROR_CODES:
        # openpyxl would store these as a formula or an error value: force a plain string.
        cell = WriteOnlyCell(sheet, text)
        cell.data_type = "s"
        return cell
    return text


def _clean(text: str) -> str:
    """Replace the characters an XLSX (XML 1.0) cell cannot hold with U+FFFD."""
    return _NOT_XML.sub("\ufffd", text)


def _discard(workbook: Workbook) -> None:
    """Remove the temporary files of a write-only workbook that will not be saved."""
    for sheet in workbook.worksheets:
        with suppress(Exception):  # best effort: the original exception is what matters
            if not sheet.closed:
                sheet.close()
            sheet._writer.cleanup()
