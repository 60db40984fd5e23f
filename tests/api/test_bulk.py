"""Bulk runs through the HTTP API and the CLI (CONTRACT.md, Bulk runs)."""

from __future__ import annotations

import csv
import io
import uuid
from pathlib import Path

import openpyxl
import pytest

from medscan.analyzer import REPORT_KEYS
from medscan.extensions import db
from medscan.models import BulkRun
from tests.dicom_factory import write_ct_file
from tests.helpers import assert_json_error, post_archive, series_entries, zip_of
from tests.zip_factory import write_symlink_zip, write_zeros_zip, write_zip

URL = "/api/bulk-runs"
HYPERLINK = '=HYPERLINK("evil.example","click").dcm'


@pytest.fixture
def batch(tmp_path) -> bytes:
    """A realistic batch: loose studies at two depths, a nested study ZIP, litter, junk."""
    nested = zip_of(series_entries(tmp_path, "ct", 3, study_uid="2.2", series_uid="2.2.1"))
    single = write_ct_file(tmp_path / "one.dcm", study_uid="3.3", series_uid="3.3.1")
    linked = write_ct_file(tmp_path / "link.dcm", study_uid="4.4", series_uid="4.4.1")
    return zip_of(
        {
            **series_entries(tmp_path, "study1", 4, study_uid="1.1", series_uid="1.1.1"),
            "p2/one.dcm": single.read_bytes(),
            "batch1/norma_anon.zip": nested,
            "notes.txt": b"not an image",
            "__MACOSX/._one.dcm": b"litter",
            ".DS_Store": b"litter",
            "fake/1.dcm": b"text pretending",
            "fake/2.dcm": b"text pretending",
            "broken.zip": b"PK\x03\x04" + bytes(64),
            HYPERLINK: linked.read_bytes(),
        }
    )


def work_entries(app) -> list[Path]:
    return list(Path(app.config["MEDSCAN_WORK_DIR"]).iterdir())


EXPECTED_ROWS = [
    (HYPERLINK, "4.4", "4.4.1", "Success"),
    ("batch1/norma_anon.zip", "2.2", "2.2.1", "Success"),
    ("broken.zip", "", "", "Failure"),
    ("fake", "", "", "Failure"),
    ("p2/one.dcm", "3.3", "3.3.1", "Success"),
    ("study1", "1.1", "1.1.1", "Success"),
]


def test_batch_gives_one_row_per_study_and_stores_the_run(client, app, batch):
    response = post_archive(client, batch, "Партия 1.zip")
    assert response.status_code == 201
    run_id = response.get_json()["id"]
    run = client.get(f"{URL}/{run_id}").get_json()
    assert run["file_name"] == "Партия 1.zip"
    assert (run["studies"], run["succeeded"], run["failed"], run["skipped_count"]) == (6, 4, 2, 1)
    assert run["skipped"] == [{"path": "notes.txt", "reason": "not DICOM"}]
    assert (run["status"], run["progress"], run["error"]) == (
        "succeeded",
        {"done": 6, "total": 6},
        None,
    )
    assert run["model"] == {"name": "stub", "version": "1", "threshold": 0.5}
    assert run["created_at"] <= run["finished_at"]
    rows = [
        (i["path_to_study"], i["study_uid"], i["series_uid"], i["processing_status"])
        for i in run["items"]
    ]
    assert rows == EXPECTED_ROWS
    for item in run["items"]:
        assert list(item) == [*REPORT_KEYS, "error"]
        if item["processing_status"] == "Success":
            assert item["error"] is None
            assert item["pathology"] == int(item["probability_of_pathology"] >= 0.5)
        else:  # a failed study never reads as "no pathology"
            assert item["error"]
            assert item["probability_of_pathology"] is None and item["pathology"] is None
    assert work_entries(app) == []  # upload and unpacked files are gone


def test_xlsx_report_has_native_types_and_safe_strings(client, batch):
    run_id = post_archive(client, batch).get_json()["id"]
    response = client.get(f"{URL}/{run_id}/report.xlsx")
    assert response.status_code == 200
    assert response.mimetype == (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="bulk_report_{run_id}.xlsx"'
    )
    book = openpyxl.load_workbook(io.BytesIO(response.get_data()))
    assert book.sheetnames == ["Report", "Errors", "About"]
    report = list(book["Report"].iter_rows(values_only=True))
    assert report[0] == REPORT_KEYS
    assert [(r[0], r[1] or "", r[2] or "", r[5]) for r in report[1:]] == EXPECTED_ROWS
    for row in report[1:]:
        if row[5] == "Success":
            assert isinstance(row[3], float) and isinstance(row[4], int)
        else:
            assert row[3] is None and row[4] is None  # empty cells, never 0
        assert isinstance(row[6], int | float) and row[6] >= 0  # XLSX reads 0.0 back as 0
    first = book["Report"]["A2"]
    assert first.value == HYPERLINK and first.data_type == "s"  # a string, not a formula

    errors = list(book["Errors"].iter_rows(values_only=True))
    assert errors[0] == ("path_to_study", "status", "reason")
    assert {(path, status) for path, status, _ in errors[1:]} == {
        ("broken.zip", "Failure"),
        ("fake", "Failure"),
        ("notes.txt", "Skipped"),
    }
    about = dict(list(book["About"].iter_rows(values_only=True))[1:])
    assert about["run_id"] == run_id and about["file_name"] == "batch.zip"
    assert (about["studies"], about["succeeded"], about["failed"], about["skipped"]) == (
        6,
        4,
        2,
        1,
    )
    assert (about["model"], about["model_version"], about["threshold"]) == ("stub", "1", 0.5)


def test_csv_report_matches_and_is_formula_safe(client, batch):
    run_id = post_archive(client, batch).get_json()["id"]
    response = client.get(f"{URL}/{run_id}/report.csv")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="bulk_report_{run_id}.csv"'
    )
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == list(REPORT_KEYS)
    assert rows[1][0] == "'" + HYPERLINK
    assert [r[0] for r in rows[2:]] == [r[0] for r in EXPECTED_ROWS[1:]]
    failure = rows[4]
    assert failure[0] == "fake" and failure[3:5] == ["", ""] and failure[5] == "Failure"


def test_list_runs_newest_first_without_items(client, batch):
    ids = [post_archive(client, batch).get_json()["id"] for _ in range(2)]
    page = client.get(URL, query_string={"limit": 1}).get_json()
    assert page["total"] == 2 and [r["id"] for r in page["items"]] == ids[1:]
    assert "items" not in page["items"][0]
    assert_json_error(client.get(URL, query_string={"limit": 101}), 400)


@pytest.mark.parametrize("suffix", ["", "/report.xlsx", "/report.csv"])
@pytest.mark.parametrize("raw_id", [str(uuid.uuid4()), "not-a-uuid"])
def test_unknown_run_is_404(client, suffix, raw_id):
    assert_json_error(client.get(f"{URL}/{raw_id}{suffix}"), 404, "Run not found")


# --- refusals -------------------------------------------------------------------------------


def test_missing_file_is_400(client):
    body = assert_json_error(client.post(URL, data={}), 400)
    assert "file" in body["details"]


@pytest.mark.parametrize(
    ("content", "name"),
    [(b"PK\x03\x04" + bytes(30), "batch.rar"), (b"just text", "batch.zip"), (b"", "a.zip")],
)
def test_other_names_or_non_zip_content_is_only_zip(client, app, content, name):
    assert_json_error(post_archive(client, content, name), 400, "Only .zip is accepted")
    assert work_entries(app) == []


def test_zip_with_unreadable_central_directory_is_corrupted(client, app, batch):
    assert_json_error(post_archive(client, batch[: len(batch) // 2]), 400, "Corrupted ZIP")
    assert work_entries(app) == []


def test_zip_with_only_litter_is_empty(client):
    content = zip_of({"__MACOSX/._a": b"x", "Thumbs.db": b"x", "dir/.DS_Store": b"x"})
    assert_json_error(post_archive(client, content), 400, "Empty ZIP")


def test_uppercase_zip_name_is_accepted(client, tmp_path):
    content = zip_of(series_entries(tmp_path, "s", 2))
    assert post_archive(client, content, "BATCH.ZIP").status_code == 201


def test_ratio_bomb_is_413_and_leaves_nothing(client, app, tmp_path):
    bomb = write_zeros_zip(tmp_path / "bomb.zip", "zeros.dcm", 101 * 2**20).read_bytes()
    response = post_archive(client, bomb)
    assert_json_error(response, 413, "ZIP entry compression ratio over 200:1")
    assert work_entries(app) == []
    with app.app_context():  # the run was visible while it worked: it ends failed, no rows
        run = db.session.query(BulkRun).one()
        assert (run.status, run.error) == ("failed", "ZIP entry compression ratio over 200:1")
        assert run.items == [] and run.finished_at is not None


def test_entries_escaping_the_work_folder_are_never_written(client, app, tmp_path):
    dicom = write_ct_file(tmp_path / "a.dcm").read_bytes()
    content = zip_of({"../escaped.dcm": dicom, "/abs/escaped2.dcm": dicom, "ok.dcm": dicom})
    assert post_archive(client, content).status_code == 201
    assert not list(tmp_path.parent.rglob("escaped*.dcm"))
    assert work_entries(app) == []


def test_symlink_entry_is_skipped_not_followed(client, app, tmp_path):
    dicom = write_ct_file(tmp_path / "a.dcm").read_bytes()
    archive = write_symlink_zip(tmp_path / "l.zip", "link.dcm", "/etc/passwd", {"a.dcm": dicom})
    run_id = post_archive(client, archive.read_bytes()).get_json()["id"]
    run = client.get(f"{URL}/{run_id}").get_json()
    assert [i["path_to_study"] for i in run["items"]] == ["a.dcm"]
    assert run["skipped_count"] == 1
    assert [s["path"] for s in run["skipped"]] == ["link.dcm"]


class TestSmallLimits:
    @pytest.fixture
    def app_config(self):
        return {
            "MEDSCAN_MAX_BULK_MB": 1,
            "MEDSCAN_MAX_ZIP_ENTRIES": 50,
            "MEDSCAN_MAX_UNZIPPED_MB": 2,
        }

    def test_body_over_the_limit_is_413(self, client, app):
        response = post_archive(client, bytes(2**20 + 1))
        assert_json_error(response, 413, "ZIP too large. Max 1 MB")
        assert work_entries(app) == []

    def test_too_many_entries_is_413(self, client, tmp_path):
        archive = write_zip(tmp_path / "many.zip", {f"f{i}.txt": b"x" for i in range(60)})
        response = post_archive(client, archive.read_bytes())
        assert_json_error(response, 413, "Too many ZIP entries. Max 50")

    def test_unpacked_size_over_the_limit_is_413(self, client, app, tmp_path):
        archive = write_zeros_zip(tmp_path / "big.zip", "big.dcm", 3 * 2**20)
        response = post_archive(client, archive.read_bytes())
        assert_json_error(response, 413, "Unpacked ZIP too large. Max 2 MB")
        assert work_entries(app) == []


# --- CLI ------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".xlsx", ".csv"])
def test_cli_writes_the_same_report_offline(runner, batch, tmp_path, suffix):
    archive = tmp_path / "batch.zip"
    archive.write_bytes(batch)
    output = tmp_path / f"report{suffix}"
    result = runner.invoke(args=["medscan", "bulk", str(archive), "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert "6 studies, 2 failed, 1 skipped files" in result.output
    if suffix == ".xlsx":
        rows = list(openpyxl.load_workbook(output)["Report"].iter_rows(values_only=True))
        assert [(r[0], r[1] or "", r[2] or "", r[5]) for r in rows[1:]] == EXPECTED_ROWS
    else:
        rows = list(csv.reader(output.open(encoding="utf-8")))
        assert [r[0] for r in rows[2:]] == [r[0] for r in EXPECTED_ROWS[1:]]


def test_cli_refuses_a_bad_archive_with_a_message(runner, tmp_path):
    archive = tmp_path / "notes.zip"
    archive.write_text("not a zip")
    result = runner.invoke(args=["medscan", "bulk", str(archive), "-o", str(tmp_path / "r.xlsx")])
    assert result.exit_code == 1
    assert "Only .zip is accepted" in result.output
    assert not (tmp_path / "r.xlsx").exists()


def test_cli_takes_several_archives_and_folders_of_them_into_one_report(runner, batch, tmp_path):
    folder = tmp_path / "incoming"
    folder.mkdir()
    (folder / "a.zip").write_bytes(batch)
    (folder / "B.ZIP").write_bytes(zip_of(series_entries(tmp_path, "s", 2, study_uid="9.9")))
    (folder / "readme.txt").write_text("not an archive: left alone")
    (tmp_path / "bad.zip").write_text("not a zip")
    output = tmp_path / "report.xlsx"
    args = ["medscan", "bulk", str(folder), str(tmp_path / "bad.zip"), "-o", str(output)]
    result = runner.invoke(args=args)
    assert result.exit_code == 1  # one archive could not be read: the report is still written
    assert "7 studies, 2 failed, 2 skipped files" in result.output
    assert "bad.zip: Only .zip is accepted" in result.output
    assert "1 of 3 archives could not be read" in result.output
    workbook = openpyxl.load_workbook(output)
    paths = [r[0] for r in workbook["Report"].iter_rows(min_row=2, values_only=True)]
    assert paths == ["B.ZIP/s"] + [f"a.zip/{row[0]}" for row in EXPECTED_ROWS]
    errors = [r[:2] for r in workbook["Errors"].iter_rows(min_row=2, values_only=True)]
    assert ("bad.zip", "Skipped") in errors and ("a.zip/notes.txt", "Skipped") in errors


def test_cli_refuses_a_folder_without_archives_and_twin_names(runner, batch, tmp_path):
    (tmp_path / "empty").mkdir()
    output = str(tmp_path / "r.csv")
    result = runner.invoke(args=["medscan", "bulk", str(tmp_path / "empty"), "-o", output])
    assert result.exit_code == 2 and "no .zip archives in folder" in result.output
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x.zip").write_bytes(batch)
    twins = [str(tmp_path / "one"), str(tmp_path / "two" / "x.zip")]
    result = runner.invoke(args=["medscan", "bulk", *twins, "-o", output])
    assert result.exit_code == 2 and "two archives share a name: x.zip" in result.output


def test_progress_is_logged_without_the_file_name(client, batch, caplog):
    caplog.set_level("INFO", logger="medscan")
    assert post_archive(client, batch, "Иванов Иван.zip").status_code == 201
    assert "study 1/4" in caplog.text and "study 4/4" in caplog.text  # 4 DICOM studies
    assert "Иванов" not in caplog.text  # archive names can carry patient names
