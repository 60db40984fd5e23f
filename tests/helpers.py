"""What several test modules share: the error-body check, patients, scans, archives and bulk
runs made by calls to the API, and scan rows compared with stored files."""

from __future__ import annotations

import io
import os
import time
import uuid
import zipfile
from pathlib import Path

from flask import Flask
from sqlalchemy import select

from medscan.extensions import db
from medscan.models import Scan, ScanFileDeletion
from medscan.storage import ScanStorage
from tests.dicom_factory import write_ct_series

PATIENTS_URL = "/api/v1/patients"
SCANS_URL = "/api/v1/scans"
BULK_URL = "/api/bulk-runs"
ASYNC = {"Prefer": "respond-async"}
# The seven report keys in order, as CONTRACT.md writes them (not taken from medscan).
CONTRACT_KEYS = (
    "path_to_study",
    "study_uid",
    "series_uid",
    "probability_of_pathology",
    "pathology",
    "processing_status",
    "time_of_processing",
)


def assert_json_error(response, status: int, message: str | None = None) -> dict:
    """``response`` is the error body with ``status`` (and ``message``, when given)."""
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert isinstance(body["error"], str) and body["error"]
    if message is not None:
        assert body["error"] == message
    return body


def create_patient(client, first="Ivan", last="Ivanov", **extra) -> str:
    """The id of a patient created through the API."""
    response = client.post(PATIENTS_URL, json={"first_name": first, "last_name": last, **extra})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def upload(client, patient_id, content: bytes, name: str = "ct.dcm", **form):
    """``POST /api/v1/scans`` of ``content`` as the file ``name``."""
    data = {"patient_id": patient_id, "file": (io.BytesIO(content), name), **form}
    return client.post(SCANS_URL, data=data, content_type="multipart/form-data")


def stored_files(app) -> list[Path]:
    """Every file under the storage folder, spooled uploads included."""
    return sorted(p for p in Path(app.config["MEDSCAN_STORAGE_DIR"]).rglob("*") if p.is_file())


def zip_of(files: dict[str, bytes]) -> bytes:
    """A deflated ZIP of ``{name: content}``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def series_entries(tmp_path: Path, folder: str, n: int, **kwargs) -> dict[str, bytes]:
    """ZIP entries ``folder/<file>`` of an ``n``-slice CT series."""
    files = write_ct_series(tmp_path / "gen" / folder, n_slices=n, **kwargs)
    return {f"{folder}/{f.name}": f.read_bytes() for f in files}


def studies_zip(tmp_path: Path, count: int) -> bytes:
    """A batch of ``count`` two-slice studies, one folder each."""
    entries: dict[str, bytes] = {}
    for n in range(count):
        entries |= series_entries(tmp_path, f"s{n}", 2, study_uid=f"1.{n}", series_uid=f"1.{n}.1")
    return zip_of(entries)


def post_archive(client, content: bytes, name: str = "batch.zip", **headers: str):
    """``POST /api/bulk-runs`` of ``content`` as the file ``name``, with ``headers``."""
    return client.post(BULK_URL, data={"file": (io.BytesIO(content), name)}, headers=headers)


def post_async(client, content: bytes, **headers: str):
    """``post_archive`` with ``Prefer: respond-async``."""
    return post_archive(client, content, **ASYNC, **headers)


def run_of(client, run_id: str) -> dict:
    """``GET /api/bulk-runs/<run_id>``'s body."""
    return client.get(f"{BULK_URL}/{run_id}").get_json()


def runs_folder(app: Flask) -> Path:
    """The folder of queued runs (``MEDSCAN_RUNS_DIR``)."""
    return Path(app.config["MEDSCAN_RUNS_DIR"])


def storage_of(app: Flask) -> ScanStorage:
    """The app's scan storage, outside any request."""
    return ScanStorage(app.config["MEDSCAN_STORAGE_DIR"])


def stored_ids(app: Flask, spooled: bool = False) -> set[str]:
    """Ids of the scan files in storage; fails on any other file left (spooled uploads),
    unless ``spooled`` lets them by."""
    root = Path(app.config["MEDSCAN_STORAGE_DIR"])
    files = [p for p in root.rglob("*") if p.is_file() and p.name != ".sweep.lock"]
    scans = [p for p in files if p.parent.parent == root and p.parent.name == p.name[:2]]
    assert spooled or scans == files, files
    return {str(uuid.UUID(p.name)) for p in scans}


def row_ids(app: Flask) -> set[str]:
    """Ids of the scan rows."""
    with app.app_context():
        ids = {str(scan_id) for scan_id in db.session.scalars(select(Scan.id))}
        db.session.remove()
    return ids


def journal(app: Flask) -> set[str]:
    """Ids of the deleted scans whose files may still be on disk."""
    with app.app_context():
        ids = {str(scan_id) for scan_id in db.session.scalars(select(ScanFileDeletion.scan_id))}
        db.session.remove()
    return ids


def assert_consistent(app: Flask) -> None:
    """Stored files are exactly the scan rows, and no deletion is left unfinished."""
    assert stored_ids(app) == row_ids(app)
    assert journal(app) == set()


def delete_rows_as_a_killed_worker(app: Flask, statement) -> None:
    """Commit a deletion and stop there: the process died before unlinking anything."""
    with app.app_context():
        db.session.execute(statement)
        db.session.commit()
        db.session.remove()


def age(path: Path, seconds: float) -> None:
    """Set ``path``'s times ``seconds`` into the past."""
    past = time.time() - seconds
    os.utime(path, (past, past))
