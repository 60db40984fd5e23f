"""Bulk runs name archive entries exactly as the archive has them (CONTRACT.md, Bulk runs)."""

from __future__ import annotations

import io
import time
from pathlib import Path

import openpyxl

from tests.dicom_factory import write_ct_file
from tests.zip_factory import patch_entry, write_zip

URL = "/api/bulk-runs"


def run(client, zip_path: Path) -> tuple[str, dict]:
    """POST the archive; its run id and the run as GET answers it."""
    response = client.post(URL, data={"file": (io.BytesIO(zip_path.read_bytes()), "batch.zip")})
    assert response.status_code == 201, response.get_json()
    run_id = response.get_json()["id"]
    return run_id, client.get(f"{URL}/{run_id}").get_json()


def sheet(client, run_id: str, name: str) -> list[tuple]:
    """The rows of one sheet of the run's XLSX report, header left out."""
    response = client.get(f"{URL}/{run_id}/report.xlsx")
    book = openpyxl.load_workbook(io.BytesIO(response.get_data()), read_only=True)
    return list(book[name].iter_rows(values_only=True))[1:]


def test_thousands_of_repeats_of_one_name_are_skipped_quickly(client, tmp_path: Path) -> None:
    """The issue's archive: 4,000 entries named a.dcm (35 s before); the first is used."""
    dicom = write_ct_file(tmp_path / "ct.dcm", study_uid="1.1", series_uid="1.1.1").read_bytes()
    zip_path = write_zip(tmp_path / "a.zip", [("a.dcm", dicom)] + [("a.dcm", b"x")] * 3999)
    started = time.perf_counter()
    run_id, body = run(client, zip_path)
    assert time.perf_counter() - started < 10
    assert [(item["path_to_study"], item["study_uid"]) for item in body["items"]] == [
        ("a.dcm", "1.1")
    ]
    errors = sheet(client, run_id, "Errors")
    assert errors == [("a.dcm", "Skipped", "duplicate entry name")] * 3999


def test_rows_and_errors_name_entries_as_the_archive_has_them(client, tmp_path: Path) -> None:
    def ct(name: str, uid: str) -> tuple[str, bytes]:
        path = write_ct_file(tmp_path / f"{uid}.dcm", study_uid=uid, series_uid=uid + ".1")
        return name, path.read_bytes()

    entries = [
        ct("s/b.dcm", "1"),
        ct("s//b.dcm", "2"),  # the same file only once "//" is read as "/"
        ct("s\\b.dcm", "3"),
        ct("S/B.dcm", "4"),
        ("s/notes.txt", b"text"),
        ("s/notes.txt", b"again"),
        ("folder/", b"data in a folder entry"),
        ("bad-name.txt", b"text"),
    ]
    zip_path = write_zip(tmp_path / "names.zip", entries)
    patch_entry(zip_path, "bad-name.txt", raw_name=b"bad\xffname.txt", flag_bits=0x800)
    run_id, body = run(client, zip_path)
    assert sorted(item["path_to_study"] for item in body["items"]) == [
        "S/B.dcm",
        "s//b.dcm",
        "s/b.dcm",
        "s\\b.dcm",
    ]
    assert sorted(sheet(client, run_id, "Errors")) == [
        ("bad\ufffdname.txt", "Skipped", "not DICOM"),
        ("folder/", "Skipped", "folder entry with data"),
        ("s/notes.txt", "Skipped", "duplicate entry name"),
        ("s/notes.txt", "Skipped", "not DICOM"),
    ]
    assert not any("~" in str(cell) for row in sheet(client, run_id, "Report") for cell in row)
