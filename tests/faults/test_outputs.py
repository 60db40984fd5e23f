"""Where reports go: a full disk while writing one, an output folder that does not exist."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import pytest

from medscan.analysis import ANALYSIS_EXTENSION
from tests.dicom_factory import write_ct_file


@pytest.fixture
def small_disk(tmpfs) -> Path:
    """A 1 MB file system of the test's own."""
    return tmpfs("size=1m")


def fill(folder: Path) -> Path:
    """Write until the file system is full; return the filler file."""
    filler = folder / "filler"
    with filler.open("wb") as handle:
        try:
            while True:
                handle.write(bytes(65536))
                handle.flush()
        except OSError:
            pass
    return filler


def batch_zip(tmp_path: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index in range(3):
            ct = write_ct_file(tmp_path / f"ct{index}.dcm", rows=8, columns=8)
            archive.write(ct, f"study{index}/ct.dcm")
    return buffer.getvalue()


# openpyxl leaves its ZipFile unclosed when a save fails; collected later, it cannot write its
# directory into the closed temp file and Python reports that as an ignored exception.
XLSX_ZIP_LEFT_OPEN = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.mark.parametrize(
    "report", ["report.csv", pytest.param("report.xlsx", marks=XLSX_ZIP_LEFT_OPEN)]
)
def test_full_disk_while_writing_a_report_is_503_and_leaves_nothing(
    app, client, small_disk, tmp_path, report, monkeypatch
):
    data = {"file": (io.BytesIO(batch_zip(tmp_path)), "batch.zip")}
    run = client.post("/api/bulk-runs", data=data, content_type="multipart/form-data")
    assert run.status_code == 201
    # Reports are written in the work folder.
    monkeypatch.setattr(app.extensions[ANALYSIS_EXTENSION], "work_folder", small_disk)
    filler = fill(small_disk)
    used = shutil.disk_usage(small_disk).used
    response = client.get(f"/api/bulk-runs/{run.get_json()['id']}/{report}")
    assert response.status_code == 503
    assert response.get_json() == {"error": "Not enough disk space"}
    assert int(response.headers["Retry-After"]) > 0
    assert list(small_disk.iterdir()) == [filler]
    assert shutil.disk_usage(small_disk).used == used  # the anonymous temp file is freed
    filler.unlink()
    assert client.get(f"/api/bulk-runs/{run.get_json()['id']}/{report}").status_code == 200


def test_cli_refuses_a_missing_output_folder_before_any_analysis(runner, tmp_path):
    archive = tmp_path / "notes.zip"
    archive.write_text("not a zip: analysing it first would say so")
    missing = tmp_path / "no such folder" / "report.xlsx"
    result = runner.invoke(args=["medscan", "bulk", str(archive), "-o", str(missing)])
    assert result.exit_code == 2
    assert "does not exist" in result.output and "--output" in result.output
    assert "Only .zip" not in result.output and "Traceback" not in result.output
    assert len(result.output.splitlines()) <= 4


def test_cli_full_disk_for_the_report_is_a_message_not_a_traceback(runner, small_disk, tmp_path):
    archive = tmp_path / "batch.zip"
    archive.write_bytes(batch_zip(tmp_path))
    fill(small_disk)
    result = runner.invoke(args=["medscan", "bulk", str(archive), "-o", str(small_disk / "r.csv")])
    assert result.exit_code == 1
    assert "cannot write" in result.output and "No space left on device" in result.output
    assert [p.name for p in small_disk.iterdir()] == ["filler"]
