"""Scans API: upload checks, storage, download, metadata, deletes (CONTRACT.md, Scans)."""

from __future__ import annotations

import hashlib
import io
import uuid
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from medscan.extensions import db
from medscan.models import Scan
from tests.dicom_factory import write_ct_file, write_ct_series
from tests.helpers import assert_json_error, create_patient, stored_files, upload, zip_of
from tests.zip_factory import write_zeros_zip

URL = "/api/v1/scans"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(200)


# --- upload: accepted content ---------------------------------------------------------------


def test_ct_dicom_round_trip_is_byte_identical(client, app, patient_id, ct_bytes):
    response = upload(client, patient_id, ct_bytes, "ct1.dcm", description="CT thorax")
    assert response.status_code == 201
    scan_id = response.get_json()["id"]
    assert response.headers["Location"].endswith(f"{URL}/{scan_id}")

    scan = client.get(f"{URL}/{scan_id}").get_json()
    assert scan["patient_id"] == patient_id
    assert scan["file_name"] == "ct1.dcm"
    assert scan["description"] == "CT thorax"
    assert set(scan) == {"id", "patient_id", "description", "file_name", "created_at", "updated_at"}

    download = client.get(f"/api/scans/{scan_id}/file")
    assert download.status_code == 200
    assert download.mimetype == "application/octet-stream"
    assert hashlib.sha256(download.get_data()).hexdigest() == hashlib.sha256(ct_bytes).hexdigest()

    with app.app_context():
        row = db.session.get(Scan, uuid.UUID(scan_id))
        assert row.size_bytes == len(ct_bytes)
        assert row.sha256 == hashlib.sha256(ct_bytes).hexdigest()
        assert row.content_kind == "dicom"
        assert row.study_uid and row.series_uid
    files = stored_files(app)
    assert [f.name for f in files] == [uuid.UUID(scan_id).hex]  # named by the server


def test_upload_without_description_stores_null(client, patient_id, ct_bytes):
    scan_id = upload(client, patient_id, ct_bytes).get_json()["id"]
    assert client.get(f"{URL}/{scan_id}").get_json()["description"] is None


def test_raw_dataset_without_preamble_is_accepted(client, patient_id):
    raw = Path(get_testdata_file("ExplVR_LitEndNoMeta.dcm")).read_bytes()
    assert raw[128:132] != b"DICM"
    assert upload(client, patient_id, raw, "raw.dcm").status_code == 201


def test_zip_of_a_series_is_accepted(client, app, patient_id, tmp_path):
    files = write_ct_series(tmp_path / "series", n_slices=5)
    content = zip_of({f"series/{f.name}": f.read_bytes() for f in files} | {"readme.txt": b"x"})
    response = upload(client, patient_id, content, "study.zip")
    assert response.status_code == 201
    scan_id = response.get_json()["id"]
    assert client.get(f"/api/scans/{scan_id}/file").get_data() == content
    with app.app_context():
        assert db.session.get(Scan, uuid.UUID(scan_id)).content_kind == "zip"


def test_content_decides_not_the_name(client, patient_id, ct_bytes):
    response = upload(client, patient_id, ct_bytes, "picture.png")
    assert response.status_code == 201


# --- upload: refused content ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "name"),
    [
        (PNG, "scan.png"),
        (PNG, "scan.dcm"),
        (b"patient notes, not an image\n" * 10, "notes.dcm"),
        (bytes(128) + b"DICM" + b"\xff" * 300, "garbage.dcm"),
        (b"PK\x03\x04" + b"\x00" * 100, "broken.zip"),
        (zip_of({"a.txt": b"hello", "b/c.txt": b"world"}), "texts.zip"),
    ],
    ids=["png", "png-named-dcm", "text-named-dcm", "dicm-then-garbage", "corrupt-zip", "text-zip"],
)
def test_non_dicom_content_is_415_and_leaves_nothing(client, app, patient_id, content, name):
    assert_json_error(upload(client, patient_id, content, name), 415, "Unsupported Media Type")
    assert stored_files(app) == []
    assert client.get(URL).get_json()["total"] == 0


def test_dicom_cut_inside_its_header_is_415(client, patient_id, ct_bytes):
    assert_json_error(upload(client, patient_id, ct_bytes[:200]), 415, "Unsupported Media Type")


def test_truncated_pixel_data_is_accepted_at_upload(client, patient_id):
    truncated = Path(get_testdata_file("MR_truncated.dcm")).read_bytes()
    assert upload(client, patient_id, truncated, "mr.dcm").status_code == 201


def test_zip_bomb_scan_is_413_even_without_dicom(client, app, patient_id, tmp_path):
    bomb = write_zeros_zip(tmp_path / "bomb.zip", "zeros.bin", 101 * 2**20).read_bytes()
    response = upload(client, patient_id, bomb, "bomb.zip")
    assert_json_error(response, 413, "ZIP entry compression ratio over 200:1")
    assert stored_files(app) == []


# --- upload: check order and 400s -----------------------------------------------------------


def test_empty_file_is_400(client, app, patient_id):
    body = assert_json_error(upload(client, patient_id, b""), 400)
    assert "empty" in body["error"]
    assert stored_files(app) == []


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"patient_id": "not-a-uuid"},
        {"patient_id": ""},
    ],
)
def test_missing_or_invalid_patient_id_is_400(client, data, ct_bytes):
    data = {**data, "file": (io.BytesIO(ct_bytes), "ct.dcm")}
    body = assert_json_error(client.post(URL, data=data), 400)
    assert "patient_id" in body["details"]


def test_missing_file_is_400(client, patient_id):
    body = assert_json_error(client.post(URL, data={"patient_id": patient_id}), 400)
    assert "file" in body["details"]


def test_unknown_patient_is_404_before_content_is_judged(client, app):
    response = upload(client, str(uuid.uuid4()), PNG, "x.png")
    assert_json_error(response, 404, "Patient not found")
    assert stored_files(app) == []


def test_invalid_patient_id_is_400_before_a_missing_patient(client):
    response = upload(client, "nope", PNG)
    assert_json_error(response, 400)


# --- upload: size limit ---------------------------------------------------------------------


def big_body(patient_id: str) -> tuple[bytes, str]:
    boundary = "medscanboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="patient_id"\r\n\r\n{patient_id}'
        f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.dcm"'
        "\r\nContent-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head + bytes(2**20 + 10) + tail, f"multipart/form-data; boundary={boundary}"


class TestSizeLimit:
    """Uploads under a 1 MB limit (the other tests of this module keep the default)."""

    @pytest.fixture
    def app_config(self):
        return {"MEDSCAN_MAX_SCAN_MB": 1}

    def test_body_over_the_limit_is_413_with_content_length(self, client, app, patient_id):
        body, content_type = big_body(patient_id)
        response = client.post(URL, data=body, content_type=content_type)
        assert_json_error(response, 413, "File too large. Max 1 MB")
        assert stored_files(app) == []

    def test_body_over_the_limit_is_413_when_chunked(self, client, app, patient_id):
        body, content_type = big_body(patient_id)
        response = client.post(
            URL,
            input_stream=io.BytesIO(body),
            content_type=content_type,
            headers={"Transfer-Encoding": "chunked"},
            # what gunicorn sets for chunked bodies
            environ_overrides={"wsgi.input_terminated": True},
        )
        assert_json_error(response, 413, "File too large. Max 1 MB")
        assert stored_files(app) == []

    def test_body_under_the_limit_passes(self, client, patient_id, ct_bytes):
        assert upload(client, patient_id, ct_bytes).status_code == 201


def test_multi_megabyte_upload_round_trips(client, app, patient_id, tmp_path):
    """Bodies are read in large pieces: several of them, and a piece boundary mid-file."""
    big = write_ct_file(tmp_path / "big.dcm", rows=1024, columns=1024 + 77).read_bytes()
    assert len(big) > 2 * 2**20
    response = upload(client, patient_id, big, "big.dcm")
    assert response.status_code == 201, response.get_json()
    scan_id = response.get_json()["id"]
    assert client.get(f"/api/scans/{scan_id}/file").get_data() == big


# --- file names -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("../../x.dcm", "x.dcm"),
        ("C:\\dir\\x.dcm", "x.dcm"),
        ("/etc/passwd", "passwd"),
        ("Иванов КТ.dcm", "Иванов КТ.dcm"),
        ("a\x00b\x07.dcm", "ab.dcm"),
    ],
)
def test_file_name_keeps_only_the_client_base_name(client, patient_id, ct_bytes, given, kept):
    scan_id = upload(client, patient_id, ct_bytes, given).get_json()["id"]
    assert client.get(f"{URL}/{scan_id}").get_json()["file_name"] == kept


def test_empty_file_name_becomes_scan_dcm_or_zip_by_content(client, patient_id, ct_bytes):
    scan_id = upload(client, patient_id, ct_bytes, "").get_json()["id"]
    assert client.get(f"{URL}/{scan_id}").get_json()["file_name"] == "scan.dcm"
    zipped = zip_of({"ct.dcm": ct_bytes})
    scan_id = upload(client, patient_id, zipped, "/").get_json()["id"]
    assert client.get(f"{URL}/{scan_id}").get_json()["file_name"] == "scan.zip"


# --- download -------------------------------------------------------------------------------


def test_download_cyrillic_name_survives_rfc6266(client, patient_id, ct_bytes):
    scan_id = upload(client, patient_id, ct_bytes, "Иванов КТ.dcm").get_json()["id"]
    header = client.get(f"/api/scans/{scan_id}/file").headers["Content-Disposition"]
    assert header.startswith('attachment; filename="scan.dcm"; ')  # nothing ASCII survives
    assert header.encode("ascii")  # the header itself is pure ASCII
    assert "filename*=UTF-8''%D0%98%D0%B2%D0%B0%D0%BD%D0%BE%D0%B2%20%D0%9A%D0%A2.dcm" in header


@pytest.mark.parametrize(
    ("name", "fallback"),
    [
        ("Café.dcm", "Cafe.dcm"),
        ("Иванов", "scan"),
        ("CT Иванов.zip", "CT .zip"),
        ('a"b.dcm', "a_b.dcm"),
    ],
)
def test_content_disposition_fallbacks(name, fallback):
    from medscan.api import content_disposition

    assert content_disposition(name).startswith(f'attachment; filename="{fallback}"')


def test_download_ascii_name_is_plain(client, patient_id, ct_bytes):
    scan_id = upload(client, patient_id, ct_bytes, "ct 1.dcm").get_json()["id"]
    header = client.get(f"/api/scans/{scan_id}/file").headers["Content-Disposition"]
    assert header == 'attachment; filename="ct 1.dcm"'


def test_download_supports_range(client, patient_id, ct_bytes):
    scan_id = upload(client, patient_id, ct_bytes).get_json()["id"]
    response = client.get(f"/api/scans/{scan_id}/file", headers={"Range": "bytes=128-131"})
    assert response.status_code == 206
    assert response.get_data() == b"DICM" == ct_bytes[128:132]
    assert response.headers["Content-Range"] == f"bytes 128-131/{len(ct_bytes)}"


def test_download_etag_and_if_none_match(client, patient_id, ct_bytes):
    scan_id = upload(client, patient_id, ct_bytes).get_json()["id"]
    first = client.get(f"/api/scans/{scan_id}/file")
    etag = first.headers["ETag"]
    assert hashlib.sha256(ct_bytes).hexdigest() in etag
    again = client.get(f"/api/scans/{scan_id}/file", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.get_data() == b""


@pytest.mark.parametrize("raw_id", [str(uuid.uuid4()), "nope"])
def test_download_unknown_scan_is_404(client, raw_id):
    assert_json_error(client.get(f"/api/scans/{raw_id}/file"), 404, "Scan not found")


# --- list, get, update ----------------------------------------------------------------------


def test_list_filters_by_patient_and_pages(client, ct_bytes):
    first, second = create_patient(client, "A", "A"), create_patient(client, "B", "B")
    ids = [upload(client, first, ct_bytes).get_json()["id"] for _ in range(3)]
    upload(client, second, ct_bytes)
    assert client.get(URL).get_json()["total"] == 4
    body = client.get(URL, query_string={"patient_id": first, "limit": 2}).get_json()
    assert body["total"] == 3 and [s["id"] for s in body["items"]] == ids[::-1][:2]
    body = client.get(URL, query_string={"patient_id": first.upper(), "offset": 2}).get_json()
    assert [s["id"] for s in body["items"]] == ids[:1]
    empty = client.get(URL, query_string={"patient_id": str(uuid.uuid4())}).get_json()
    assert empty == {"items": [], "total": 0, "limit": 20, "offset": 0}


@pytest.mark.parametrize("query", [{"patient_id": "nope"}, {"limit": 0}, {"offset": -1}])
def test_list_invalid_arguments_are_400(client, query):
    assert_json_error(client.get(URL, query_string=query), 400)


def test_get_unknown_scan_is_404(client):
    assert_json_error(client.get(f"{URL}/{uuid.uuid4()}"), 404, "Scan not found")
    assert_json_error(client.get(f"{URL}/xyz"), 404, "Scan not found")


def test_update_description_only(client, patient_id, ct_bytes):
    scan_id = upload(client, patient_id, ct_bytes, "a.dcm").get_json()["id"]
    before = client.get(f"{URL}/{scan_id}").get_json()
    response = client.put(f"{URL}/{scan_id}", json={"description": "re-read"})
    assert response.status_code == 200
    after = response.get_json()
    assert after["description"] == "re-read" and after["updated_at"] > before["updated_at"]
    fetched = {**after, "description": None}  # the fetched object sent back, read-only fields in
    assert client.put(f"{URL}/{scan_id}", json=fetched).get_json()["description"] is None
    assert client.get(f"{URL}/{scan_id}").get_json()["file_name"] == "a.dcm"


@pytest.mark.parametrize(
    "body",
    [{}, {"patient_id": str(uuid.uuid4())}, {"description": "x", "kind": "y"}, {"description": 5}],
)
def test_update_rejects_anything_but_a_description(client, patient_id, ct_bytes, body):
    scan_id = upload(client, patient_id, ct_bytes).get_json()["id"]
    assert_json_error(client.put(f"{URL}/{scan_id}", json=body), 400)


def test_update_unknown_scan_is_404(client):
    assert_json_error(client.put(f"{URL}/{uuid.uuid4()}", json={"description": "x"}), 404)


# --- deletes and consistency ----------------------------------------------------------------


def test_delete_scan_removes_its_file(client, app, patient_id, ct_bytes):
    scan_id = upload(client, patient_id, ct_bytes).get_json()["id"]
    assert len(stored_files(app)) == 1
    assert client.delete(f"{URL}/{scan_id}").status_code == 204
    assert stored_files(app) == []
    assert_json_error(client.get(f"{URL}/{scan_id}"), 404, "Scan not found")
    assert_json_error(client.delete(f"{URL}/{scan_id}"), 404, "Scan not found")


def test_delete_scan_whose_file_is_missing_is_204(client, app, patient_id, ct_bytes):
    scan_id = upload(client, patient_id, ct_bytes).get_json()["id"]
    for path in stored_files(app):
        path.unlink()
    assert client.delete(f"{URL}/{scan_id}").status_code == 204


def test_delete_patient_cascades_to_scans_and_files(client, app, patient_id, ct_bytes):
    other = create_patient(client, "Keep", "Me")
    for _ in range(2):
        upload(client, patient_id, ct_bytes)
    kept = upload(client, other, ct_bytes).get_json()["id"]
    assert client.delete(f"/api/v1/patients/{patient_id}").status_code == 204
    assert [s["id"] for s in client.get(URL).get_json()["items"]] == [kept]
    assert [f.name for f in stored_files(app)] == [uuid.UUID(kept).hex]


def test_commit_failure_leaves_no_file_behind(client, app, patient_id, ct_bytes, monkeypatch):
    app.config["PROPAGATE_EXCEPTIONS"] = False

    def failing_commit():
        raise RuntimeError("database went away")

    monkeypatch.setattr(db.session, "commit", failing_commit)
    assert_json_error(upload(client, patient_id, ct_bytes), 500)
    monkeypatch.undo()
    assert stored_files(app) == []
    assert client.get(URL).get_json()["total"] == 0
