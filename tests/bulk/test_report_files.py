"""Bulk report files: XLSX sheets read back with openpyxl, CSV lines read back with csv.reader."""

from __future__ import annotations

import csv
import io
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from openpyxl.worksheet.worksheet import Worksheet

from medscan.analyzer.report import FAILURE, REPORT_KEYS, SUCCESS, ReportRow
from medscan.bulk.report_files import (
    ABOUT_KEYS,
    ERRORS_HEADER,
    SKIPPED,
    ErrorLine,
    csv_lines,
    write_xlsx,
)

STUDY_UID = "1.2.840.113619.2.55.3.604688119"
SERIES_UID = "1.2.840.113619.2.55.3.604688119.12"
HYPERLINK = '=HYPERLINK("http://evil","x")'
#: Text a spreadsheet would take for a formula, a number or an error value.
HOSTILE = [HYPERLINK, "=1+1", "+1", "-1", "@x", "#N/A", "#DIV/0!"]

SICK = ReportRow("исследования/Иванов И.И.", STUDY_UID, SERIES_UID, 0.73, 1, SUCCESS, 1.25)
FAILED = ReportRow.failure("001", seconds=0.5)
ERRORS = [
    ErrorLine("001", FAILURE, "no readable DICOM"),
    ErrorLine("batch1/notes.txt", SKIPPED, "neither DICOM nor ZIP"),
]
RUN_ID = uuid.UUID("0b5e1c4e-7f3a-4d2b-9c1d-2e3f4a5b6c7d")
ABOUT: dict[str, Any] = {
    "run_id": RUN_ID,
    "file_name": "архив.zip",
    "created_at": datetime(2025, 9, 20, 10, 0, tzinfo=UTC),
    "finished_at": datetime(2025, 9, 20, 13, 0, 5, 250000, tzinfo=timezone(timedelta(hours=3))),
    "studies": 2,
    "succeeded": 1,
    "failed": 1,
    "skipped": 1,
    "model": "stub",
    "model_version": "0.1.0",
    "threshold": 0.5,
}


def success(path: str) -> ReportRow:
    """Return a Success row for `path`."""
    return ReportRow(path, STUDY_UID, SERIES_UID, 0.25, 0, SUCCESS, 0.75)


def build(
    tmp_path: Path,
    rows: list[ReportRow] | None = None,
    errors: list[ErrorLine] | None = None,
    about: dict[str, Any] | None = None,
) -> openpyxl.Workbook:
    """Write a workbook to a file and load it back."""
    target = tmp_path / "report.xlsx"
    write_xlsx(
        target,
        [SICK, FAILED] if rows is None else rows,
        ERRORS if errors is None else errors,
        ABOUT if about is None else about,
    )
    return openpyxl.load_workbook(target)


def values(sheet: Worksheet) -> list[tuple[Any, ...]]:
    """Return every row of `sheet` as a tuple of values."""
    return list(sheet.iter_rows(values_only=True))


def csv_rows(rows: list[ReportRow]) -> list[list[str]]:
    """Return the CSV of `rows` parsed back, header included."""
    return list(csv.reader(io.StringIO("".join(csv_lines(rows)), newline="")))


# --- XLSX ---------------------------------------------------------------------------------------


def test_sheets_and_headers(tmp_path: Path) -> None:
    book = build(tmp_path)
    assert book.sheetnames == ["Report", "Errors", "About"]
    assert values(book["Report"])[0] == REPORT_KEYS
    assert values(book["Errors"])[0] == ERRORS_HEADER
    assert values(book["About"])[0] == ("key", "value")


def test_report_rows_have_native_types(tmp_path: Path) -> None:
    sick, failed = values(build(tmp_path)["Report"])[1:]
    assert sick == ("исследования/Иванов И.И.", STUDY_UID, SERIES_UID, 0.73, 1, SUCCESS, 1.25)
    assert [type(value) for value in sick] == [str, str, str, float, int, str, float]
    # A failure is empty, never 0 ("no pathology"); its unknown UIDs are empty cells too.
    assert failed == ("001", None, None, None, None, FAILURE, 0.5)


def test_failure_cells_are_absent_not_zero(tmp_path: Path) -> None:
    sheet = build(tmp_path, rows=[FAILED])["Report"]
    assert sheet["D2"].value is None and sheet["D2"].data_type == "n"
    assert sheet["E2"].value is None


@pytest.mark.parametrize("text", ["001", "1.2.840", "1e5", "0.5", "TRUE", "2025-09-20"])
def test_text_that_looks_like_a_value_stays_text(tmp_path: Path, text: str) -> None:
    row = ReportRow(text, text, text, 0.5, 1, SUCCESS, 1.5)
    sheet = build(tmp_path, rows=[row], errors=[ErrorLine(text, SKIPPED, text)])["Report"]
    for cell in sheet[2][:3]:
        assert (cell.value, cell.data_type) == (text, "s")


@pytest.mark.parametrize("text", HOSTILE)
def test_formula_like_text_is_stored_as_a_string(tmp_path: Path, text: str) -> None:
    about = {**ABOUT, "file_name": text}
    book = build(tmp_path, [success(text)], [ErrorLine(text, FAILURE, text)], about)
    cells = [
        book["Report"]["A2"],
        book["Errors"]["A2"],
        book["Errors"]["C2"],
        book["About"]["B3"],
    ]
    for cell in cells:
        assert (cell.value, cell.data_type) == (text, "s")


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x0b", "\x1b", "\x1f", "\udc80", "\ufffe"])
def test_characters_xml_cannot_hold_become_replacement(tmp_path: Path, char: str) -> None:
    path = f"bad{char}name/001"
    book = build(tmp_path, [success(path)], [ErrorLine(path, SKIPPED, f"reason{char}")])
    assert book["Report"]["A2"].value == "bad\ufffdname/001"
    assert book["Errors"]["A2"].value == "bad\ufffdname/001"
    assert book["Errors"]["C2"].value == "reason\ufffd"


def test_tab_and_newline_survive(tmp_path: Path) -> None:
    book = build(tmp_path, rows=[success("a\tb\nc")])
    assert book["Report"]["A2"].value == "a\tb\nc"


def test_cyrillic_round_trips(tmp_path: Path) -> None:
    error = ErrorLine("папка/снимок.txt", SKIPPED, "не DICOM и не ZIP")
    book = build(tmp_path, errors=[error])
    assert book["Report"]["A2"].value == "исследования/Иванов И.И."
    assert values(book["Errors"])[1] == ("папка/снимок.txt", SKIPPED, "не DICOM и не ZIP")


def test_errors_sheet_rows(tmp_path: Path) -> None:
    assert values(build(tmp_path)["Errors"])[1:] == [
        ("001", FAILURE, "no readable DICOM"),
        ("batch1/notes.txt", SKIPPED, "neither DICOM nor ZIP"),
    ]


def test_about_rows_in_order(tmp_path: Path) -> None:
    about = dict(reversed(ABOUT.items()))  # the mapping's own order does not matter
    rows = values(build(tmp_path, about=about)["About"])[1:]
    assert rows == [
        ("run_id", "0b5e1c4e-7f3a-4d2b-9c1d-2e3f4a5b6c7d"),
        ("file_name", "архив.zip"),
        ("created_at", "2025-09-20T10:00:00Z"),
        ("finished_at", "2025-09-20T10:00:05.250000Z"),
        ("studies", 2),
        ("succeeded", 1),
        ("failed", 1),
        ("skipped", 1),
        ("model", "stub"),
        ("model_version", "0.1.0"),
        ("threshold", 0.5),
    ]
    assert [key for key, _ in rows] == list(ABOUT_KEYS)


def test_about_naive_datetime_is_utc_and_none_is_empty(tmp_path: Path) -> None:
    about = {**ABOUT, "created_at": datetime(2025, 9, 20, 10, 0), "finished_at": None}
    sheet = build(tmp_path, about=about)["About"]
    assert sheet["B4"].value == "2025-09-20T10:00:00Z"
    assert (sheet["A5"].value, sheet["B5"].value) == ("finished_at", None)


def test_about_extra_keys_are_ignored(tmp_path: Path) -> None:
    rows = values(build(tmp_path, about={**ABOUT, "secret": "x"})["About"])
    assert len(rows) == 1 + len(ABOUT_KEYS)


def test_about_missing_key_fails_before_writing(tmp_path: Path) -> None:
    about = {key: value for key, value in ABOUT.items() if key != "model_version"}
    with pytest.raises(KeyError, match="model_version"):
        write_xlsx(tmp_path / "report.xlsx", [SICK], ERRORS, about)
    assert not (tmp_path / "report.xlsx").exists()


@pytest.mark.parametrize("title", ["Report", "Errors", "About"])
def test_header_bold_and_frozen(tmp_path: Path, title: str) -> None:
    sheet = build(tmp_path)[title]
    assert sheet.freeze_panes == "A2"
    assert all(cell.font.bold for cell in sheet[1])
    assert not any(cell.font.bold for cell in sheet[2])


def test_column_widths(tmp_path: Path) -> None:
    book = build(tmp_path)
    report, errors = book["Report"].column_dimensions, book["Errors"].column_dimensions
    assert report["A"].width == 60  # path_to_study
    assert report["B"].width == report["C"].width == 64  # UIDs
    assert all(report[letter].width >= 14 for letter in "DEFG")
    assert report["D"].width > len("probability_of_pathology")
    assert errors["A"].width == 60 and errors["C"].width == 80


def test_empty_run_has_headers_only(tmp_path: Path) -> None:
    book = build(tmp_path, rows=[], errors=[])
    assert values(book["Report"]) == [REPORT_KEYS]
    assert values(book["Errors"]) == [ERRORS_HEADER]


def test_writes_to_a_binary_stream() -> None:
    stream = io.BytesIO()
    write_xlsx(stream, [SICK], ERRORS, ABOUT)
    stream.seek(0)
    assert openpyxl.load_workbook(stream)["Report"]["A2"].value == SICK.path_to_study


def test_iterables_consumed_once_in_order(tmp_path: Path) -> None:
    log: list[str] = []

    def rows() -> Iterator[ReportRow]:
        for index in range(3):
            log.append(f"row{index}")
            yield success(f"s{index}")

    def errors() -> Iterator[ErrorLine]:
        log.append("errors")
        yield ERRORS[0]

    write_xlsx(tmp_path / "report.xlsx", rows(), errors(), ABOUT)
    assert log == ["row0", "row1", "row2", "errors"]


def test_failure_midway_leaves_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    def rows() -> Iterator[ReportRow]:
        yield SICK
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError, match="database went away"):
        write_xlsx(tmp_path / "report.xlsx", rows(), ERRORS, ABOUT)
    assert list(scratch.iterdir()) == []
    assert not (tmp_path / "report.xlsx").exists()


def test_success_leaves_no_temporary_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    build(tmp_path)
    assert list(scratch.iterdir()) == []


def test_error_line_status_is_checked() -> None:
    with pytest.raises(ValueError, match="status"):
        ErrorLine("a.txt", SUCCESS, "fine")


# --- CSV ----------------------------------------------------------------------------------------


def test_csv_header_and_rows() -> None:
    assert csv_rows([SICK, FAILED]) == [
        list(REPORT_KEYS),
        ["исследования/Иванов И.И.", STUDY_UID, SERIES_UID, "0.73", "1", SUCCESS, "1.25"],
        ["001", "", "", "", "", FAILURE, "0.5"],  # a failure is empty, never 0
    ]


def test_csv_yields_one_crlf_line_per_row_without_bom() -> None:
    lines = list(csv_lines([SICK, FAILED]))
    assert lines[0] == ",".join(REPORT_KEYS) + "\r\n"
    assert len(lines) == 3
    assert all(line.endswith("\r\n") and line.count("\r\n") == 1 for line in lines)


def test_csv_is_lazy() -> None:
    def rows() -> Iterator[ReportRow]:
        raise AssertionError("rows read before the header was sent")
        yield SICK

    assert next(csv_lines(rows())) == ",".join(REPORT_KEYS) + "\r\n"


@pytest.mark.parametrize("text", [HYPERLINK, "+1", "-1", "@x", "\tx", "\rx"])
def test_csv_prefixes_formula_like_cells(text: str) -> None:
    row = ReportRow(text, text, "1.2", 0.5, 1, SUCCESS, 1.0)
    assert csv_rows([row])[1][:3] == ["'" + text, "'" + text, "1.2"]


def test_csv_leaves_plain_text_alone() -> None:
    row = success('a=b, "quoted"; ok-1')
    assert csv_rows([row])[1][0] == 'a=b, "quoted"; ok-1'


def test_csv_cyrillic_and_unencodable_text() -> None:
    text = "".join(csv_lines([SICK, success("bad\udc80\x07name")]))
    assert "исследования/Иванов И.И." in text
    assert "bad\ufffd\ufffdname" in text
    text.encode("utf-8")  # the route encodes every line: nothing may fail there
