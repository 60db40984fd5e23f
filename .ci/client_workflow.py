"""Drive the API through a client generated from its own OpenAPI document (see .ci/client).

Usage: ``python .ci/client_workflow.py API_URL API_KEY`` with the generated ``medscan_client``
package and the repository on ``PYTHONPATH``. Exits non-zero on any crash or unexpected answer.
"""

from __future__ import annotations

import csv
import io
import sys
import tempfile
import uuid
import zipfile
from pathlib import Path
from typing import Any

import openpyxl
from medscan_client import AuthenticatedClient, Client
from medscan_client.api.bulk import (
    create_bulk_run,
    get_bulk_report_csv,
    get_bulk_report_xlsx,
    get_bulk_run,
    list_bulk_runs,
)
from medscan_client.api.health import get_health
from medscan_client.api.patients import (
    create_patient,
    delete_patient,
    get_patient,
    list_patients,
    update_patient,
)
from medscan_client.api.scans import (
    analyze_scan,
    delete_scan,
    download_scan_file,
    get_scan,
    get_scan_report,
    list_scans,
    update_scan,
    upload_scan,
)
from medscan_client.models import (
    AnalyzeResponse,
    BulkRunDetail,
    BulkRunPage,
    BulkUpload,
    Error,
    Health,
    Id,
    Patient,
    PatientCreate,
    PatientPage,
    PatientUpdate,
    Result,
    Scan,
    ScanPage,
    ScanUpdate,
    ScanUpload,
    StoredReport,
)
from medscan_client.types import File, Response

from medscan.analyzer.report import ReportRow
from tests.dicom_factory import write_ct_series

KEYS = list(ReportRow.__dataclass_fields__)
calls = 0


def expect(response: Response, status: int, kind: type) -> Any:
    """The parsed body of ``response``, which must have ``status`` and be a ``kind``."""
    global calls
    calls += 1
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert isinstance(response.parsed, kind), (type(response.parsed), response.content[:300])
    return response.parsed


def expect_error(response: Response, status: int, message: str) -> Error:
    """An error answer, parsed into the document's ``Error`` model."""
    error = expect(response, status, Error)
    assert error.error.startswith(message), error.error
    return error


def study_files(folder: Path) -> tuple[bytes, bytes]:
    """One CT slice as a DICOM file, and a three-slice study as a ZIP of one folder."""
    files = write_ct_series(folder / "series", n_slices=3)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for path in files:
            zipped.write(path, f"study/{path.name}")
    return files[0].read_bytes(), archive.getvalue()


def patients(client: AuthenticatedClient, token: str) -> uuid.UUID:
    """Create, find (Cyrillic, ё = е), read and change a patient; its id."""
    created = expect(
        create_patient.sync_detailed(
            client=client, body=PatientCreate(first_name="Иван", last_name=f"Семёнов{token}")
        ),
        201,
        Id,
    )
    patient = expect(get_patient.sync_detailed(created.id, client=client), 200, Patient)
    assert patient.description is None and patient.last_name == f"Семёнов{token}"
    page = expect(
        list_patients.sync_detailed(client=client, q=f"семенов{token}", limit=5), 200, PatientPage
    )
    assert [item.id for item in page.items] == [created.id], page
    changed = expect(
        update_patient.sync_detailed(
            created.id, client=client, body=PatientUpdate(description="follow-up")
        ),
        200,
        Patient,
    )
    assert changed.description == "follow-up"
    expect_error(
        create_patient.sync_detailed(
            client=client, body=PatientCreate(first_name=" ", last_name="x")
        ),
        400,
        "first_name",
    )
    return created.id


def scans(client: AuthenticatedClient, patient_id: uuid.UUID, dicom: bytes, study: bytes) -> None:
    """Upload (no description, then a ZIP with one), download, analyse, report, change."""
    slice_upload = ScanUpload(patient_id=patient_id, file=File(io.BytesIO(dicom), "Семёнов.dcm"))
    slice_id = expect(upload_scan.sync_detailed(client=client, body=slice_upload), 201, Id).id
    stored = expect(get_scan.sync_detailed(slice_id, client=client), 200, Scan)
    # No description sent: stored as null, never as the text "None".
    assert stored.description is None and stored.file_name == "Семёнов.dcm", stored
    downloaded = expect(download_scan_file.sync_detailed(slice_id, client=client), 200, File)
    assert downloaded.payload.read() == dicom

    zip_upload = ScanUpload(
        patient_id=patient_id,
        file=File(io.BytesIO(study), "study.zip", "application/zip"),
        description="CT thorax",
    )
    scan_id = expect(upload_scan.sync_detailed(client=client, body=zip_upload), 201, Id).id
    analysis = expect(analyze_scan.sync_detailed(scan_id, client=client), 200, AnalyzeResponse)
    assert analysis.ok and isinstance(analysis.result, Result), analysis
    assert analysis.result.extras["model"] == "stub"
    assert analysis.report.processing_status == "Success"
    report = expect(get_scan_report.sync_detailed(scan_id, client=client), 200, StoredReport)
    assert report.report.to_dict() == analysis.report.to_dict()
    assert list(report.report.to_dict()) == KEYS
    changed = expect(
        update_scan.sync_detailed(scan_id, client=client, body=ScanUpdate(description=None)),
        200,
        Scan,
    )
    assert changed.description is None
    page = expect(list_scans.sync_detailed(client=client, patient_id=patient_id), 200, ScanPage)
    assert {item.id for item in page.items} == {slice_id, scan_id}

    expect_error(
        upload_scan.sync_detailed(
            client=client,
            body=ScanUpload(patient_id=uuid.uuid4(), file=File(io.BytesIO(dicom), "a.dcm")),
        ),
        404,
        "Patient not found",
    )
    expect_error(
        upload_scan.sync_detailed(
            client=client,
            body=ScanUpload(patient_id=patient_id, file=File(io.BytesIO(b"text"), "a.dcm")),
        ),
        415,
        "Unsupported Media Type",
    )
    expect(delete_scan.sync_detailed(slice_id, client=client), 204, type(None))
    expect_error(get_scan.sync_detailed(slice_id, client=client), 404, "Scan not found")


def bulk(client: AuthenticatedClient, study: bytes) -> None:
    """A bulk run, its rows, and both report files."""
    upload = BulkUpload(file=File(io.BytesIO(study), "batch.zip", "application/zip"))
    run_id = expect(create_bulk_run.sync_detailed(client=client, body=upload), 201, Id).id
    run = expect(get_bulk_run.sync_detailed(run_id, client=client), 200, BulkRunDetail)
    assert (run.studies, run.succeeded, run.failed) == (1, 1, 0), run
    assert run.items[0].path_to_study == "study" and run.items[0].error is None
    page = expect(list_bulk_runs.sync_detailed(client=client, limit=100), 200, BulkRunPage)
    assert run_id in {item.id for item in page.items}

    workbook_file = expect(get_bulk_report_xlsx.sync_detailed(run_id, client=client), 200, File)
    workbook = openpyxl.load_workbook(workbook_file.payload, read_only=True)
    assert workbook.sheetnames == ["Report", "Errors", "About"], workbook.sheetnames
    rows = list(workbook["Report"].values)
    assert list(rows[0]) == KEYS and len(rows) == 2 and rows[1][0] == "study", rows
    text = expect(get_bulk_report_csv.sync_detailed(run_id, client=client), 200, str)
    lines = list(csv.reader(io.StringIO(text)))
    assert lines[0] == KEYS and len(lines) == 2, lines


def not_found(client: AuthenticatedClient, patient_id: uuid.UUID) -> None:
    """Unknown and malformed ids are 404 JSON errors, parsed by the client."""
    unknown = uuid.uuid4()
    expect_error(get_patient.sync_detailed(unknown, client=client), 404, "Patient not found")
    expect_error(analyze_scan.sync_detailed(unknown, client=client), 404, "Scan not found")
    expect_error(get_bulk_run.sync_detailed(unknown, client=client), 404, "Run not found")
    expect_error(get_bulk_report_xlsx.sync_detailed(unknown, client=client), 404, "Run not found")
    # A path id that is not a UUID answers exactly like an unknown one.
    malformed: Any = "not-a-uuid"
    expect_error(get_scan_report.sync_detailed(malformed, client=client), 404, "Scan not found")
    expect(delete_patient.sync_detailed(patient_id, client=client), 204, type(None))
    expect_error(get_patient.sync_detailed(patient_id, client=client), 404, "Patient not found")


def main(api: str, key: str) -> None:
    anonymous = Client(base_url=api, raise_on_unexpected_status=True)
    health = expect(get_health.sync_detailed(client=anonymous), 200, Health)
    assert health.status == "ok"
    expect_error(list_patients.sync_detailed(client=anonymous), 401, "Unauthorized")

    client = AuthenticatedClient(base_url=api, token=key, raise_on_unexpected_status=True)
    with tempfile.TemporaryDirectory() as folder:
        dicom, study = study_files(Path(folder))
    patient_id = patients(client, uuid.uuid4().hex[:8])
    scans(client, patient_id, dicom, study)
    bulk(client, study)
    not_found(client, patient_id)
    print(f"generated client: {calls} calls answered as documented")


if __name__ == "__main__":
    main(*sys.argv[1:3])
