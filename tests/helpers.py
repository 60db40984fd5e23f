"""Helpers of the API tests: the error-body check, and patients, scans and archives made by
calls to the API."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from tests.dicom_factory import write_ct_series

PATIENTS_URL = "/api/v1/patients"
SCANS_URL = "/api/v1/scans"
BULK_URL = "/api/bulk-runs"


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


def post_archive(client, content: bytes, name: str = "batch.zip"):
    """``POST /api/bulk-runs`` of ``content`` as the file ``name``."""
    return client.post(BULK_URL, data={"file": (io.BytesIO(content), name)})
