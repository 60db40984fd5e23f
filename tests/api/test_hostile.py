"""Hostile bodies and headers are the client's mistake (400/413), a full disk is 503, never 500.

CONTRACT.md, Conventions (hostile bodies, the server's own troubles) and Scans (Range).
Stalled bodies and chunked framing need a real server: tests/server/.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tests.helpers import assert_json_error, upload

PATIENTS = "/api/v1/patients"
SCANS = "/api/v1/scans"
BULK = "/api/bulk-runs"
MIB = 2**20

# --- hostile JSON ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("[" * 100_000, "nested too deeply"),
        ('{"a": ' * 100_000, "nested too deeply"),
        ('{"first_name": "\\ud800", "last_name": "x"}', "a string holds a lone surrogate"),
        ('{"first_name": "a", "last_name": "b", "description": "x\\udfff"}', "a string"),
        ('{"first_name": "a", "last_name": "b", "description": ' + "9" * 5000 + "}", "a number"),
    ],
    ids=["brackets", "objects", "surrogate", "low surrogate", "5000 digits"],
)
@pytest.mark.parametrize("method", ["post", "put"])
def test_hostile_json_is_400(client, patient_id, method, body, reason):
    url = PATIENTS if method == "post" else f"{PATIENTS}/{patient_id}"
    response = getattr(client, method)(url, data=body, content_type="application/json")
    assert_json_error(response, 400)
    assert response.get_json()["error"].startswith(f"Invalid JSON body: {reason}")


def test_hostile_json_in_a_scan_update_is_400(client, patient_id, ct_bytes):
    scan_id = upload(client, patient_id, ct_bytes).get_json()["id"]
    body = '{"description": "\\ud800"}'
    response = client.put(f"{SCANS}/{scan_id}", data=body, content_type="application/json")
    assert_json_error(response, 400, "Invalid JSON body: a string holds a lone surrogate.")


def test_a_surrogate_pair_is_a_character_not_an_error(client):
    body = '{"first_name": "\\ud83d\\ude00", "last_name": "x"}'
    response = client.post(PATIENTS, data=body, content_type="application/json")
    assert response.status_code == 201
    patient = client.get(f"{PATIENTS}/{response.get_json()['id']}").get_json()
    assert patient["first_name"] == "\U0001f600"


# --- multipart: a file part that is not a file, form limits ----------------------------------

NOT_A_FILE = "Must be a file part (with a filename), not a form field."


@pytest.mark.parametrize("url", [SCANS, BULK])
def test_a_form_field_named_file_is_400_with_details(client, patient_id, url):
    form = {"patient_id": patient_id} if url == SCANS else {}
    response = client.post(url, data={**form, "file": "x"})
    body = assert_json_error(response, 400)
    assert body["details"] == {"file": [NOT_A_FILE]}


@pytest.mark.parametrize("url", [SCANS, BULK])
def test_a_file_part_without_filename_is_400_with_details(client, patient_id, url):
    patient_part = (
        f'--b\r\nContent-Disposition: form-data; name="patient_id"\r\n\r\n{patient_id}\r\n'
    )
    raw = (
        (patient_part if url == SCANS else "")
        + '--b\r\nContent-Disposition: form-data; name="file"\r\n'
        "Content-Type: application/octet-stream\r\n\r\nDICM\r\n--b--\r\n"
    )
    response = client.post(url, data=raw, content_type="multipart/form-data; boundary=b")
    assert assert_json_error(response, 400)["details"] == {"file": [NOT_A_FILE]}


@pytest.mark.parametrize("url", [SCANS, BULK])
@pytest.mark.parametrize("name", ["comment", "file2"])
def test_an_unknown_form_part_is_400_naming_it(client, patient_id, ct_bytes, url, name):
    form = {"patient_id": patient_id} if url == SCANS else {}
    extra = (io.BytesIO(b"x"), "x.zip") if name == "file2" else "x"
    data = {**form, "file": (io.BytesIO(ct_bytes), "x.zip"), name: extra}
    body = assert_json_error(client.post(url, data=data), 400)
    assert body["details"] == {name: ["Unknown field."]}


FORM_TOO_LARGE = "Form too large: a text field holds at most 2 MB and a form at most 1000 parts"


@pytest.mark.parametrize("url", [SCANS, BULK])
def test_a_3_mb_text_field_is_413_naming_the_form_limit(client, patient_id, url):
    data = {
        "patient_id": patient_id,
        "description": "x" * (3 * MIB),
        "file": (io.BytesIO(b"PK\x05\x06" + bytes(18)), "a.zip"),
    }
    assert_json_error(client.post(url, data=data), 413, FORM_TOO_LARGE)


@pytest.mark.parametrize("url", [SCANS, BULK])
def test_10000_fields_are_413_naming_the_form_limit(client, patient_id, url):
    data = {f"field{i}": "x" for i in range(10_000)}
    data["file"] = (io.BytesIO(b"PK\x05\x06" + bytes(18)), "a.zip")
    assert_json_error(client.post(url, data=data), 413, FORM_TOO_LARGE)


# --- Range (RFC 9110 14.2) -------------------------------------------------------------------


@pytest.fixture
def scan_file(client, patient_id, ct_bytes) -> tuple[str, bytes]:
    scan_id = upload(client, patient_id, ct_bytes).get_json()["id"]
    return f"/api/scans/{scan_id}/file", ct_bytes


@pytest.mark.parametrize(
    "sent", ["items=0-5", "bytes=a-b", "bytes=", "bytes=0-1,4-5", "bytes=5-2", "0-5"]
)
def test_range_that_is_not_one_bytes_range_is_ignored(client, scan_file, sent):
    url, content = scan_file
    response = client.get(url, headers={"Range": sent})
    assert response.status_code == 200
    assert response.data == content
    assert "Content-Range" not in response.headers


def test_one_satisfiable_range_is_206(client, scan_file):
    url, content = scan_file
    response = client.get(url, headers={"Range": f"bytes={len(content) - 4}-"})
    assert response.status_code == 206
    assert response.data == content[-4:]


def test_a_range_wholly_past_the_end_is_416(client, scan_file):
    url, content = scan_file
    response = client.get(url, headers={"Range": f"bytes={len(content) + 10}-"})
    assert_json_error(response, 416)


# --- disk full -------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmpfs) -> Path:
    """A 2 MiB file system of the test's own."""
    return tmpfs("size=2m")


class TestDiskFull:
    @pytest.fixture
    def app_config(self, small_disk):
        return {
            "MEDSCAN_STORAGE_DIR": str(small_disk / "scans"),
            "MEDSCAN_WORK_DIR": str(small_disk / "work"),
        }

    @staticmethod
    def assert_disk_full(response, small_disk: Path) -> None:
        assert_json_error(response, 503, "Not enough disk space")
        assert int(response.headers["Retry-After"]) > 0
        assert [p for p in small_disk.rglob("*") if p.is_file()] == []

    def test_scan_larger_than_the_free_space_is_503(self, client, patient_id, small_disk):
        response = upload(client, patient_id, b"\0" * (3 * MIB))
        self.assert_disk_full(response, small_disk)

    def test_bulk_zip_larger_than_the_free_space_is_503(self, client, small_disk):
        data = {"file": (io.BytesIO(b"PK\x03\x04" + b"\0" * (3 * MIB)), "big.zip")}
        self.assert_disk_full(client.post(BULK, data=data), small_disk)

    def test_small_upload_on_a_full_disk_is_503(self, client, patient_id, ct_bytes, small_disk):
        filler = small_disk / "filler"
        with filler.open("wb") as out, pytest.raises(OSError):
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        try:
            response = upload(client, patient_id, ct_bytes)
        finally:
            filler.unlink()
        self.assert_disk_full(response, small_disk)

    def test_a_full_disk_keeps_no_row(self, client, app, patient_id, small_disk):
        upload(client, patient_id, b"\0" * (3 * MIB))
        assert client.get(SCANS).get_json()["total"] == 0


def test_other_os_errors_stay_500(app, client):
    app.config["PROPAGATE_EXCEPTIONS"] = False  # answer as in production, not raise

    @app.get("/api/boom")
    def boom():
        raise PermissionError(13, "Permission denied")

    assert_json_error(client.get("/api/boom"), 500)
