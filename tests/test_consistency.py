"""Scan rows and stored files agree: races, interrupted deletions, orphans, check-storage.

CONTRACT.md, Conventions, Consistency. Real database, real files; the leftovers of a process
killed at a dangerous moment are made exactly as the kill leaves them (rows committed, files
not yet unlinked; a file renamed in, its row never committed). tests/faults/ kills real
gunicorn workers.
"""

from __future__ import annotations

import io
import logging
import threading
import time
import uuid
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import create_engine, delete

from medscan.extensions import db
from medscan.models import Patient, Scan, ScanFileDeletion
from medscan.storage import sweep_once
from tests.dicom_factory import write_ct_file
from tests.helpers import (
    age,
    assert_consistent,
    delete_rows_as_a_killed_worker,
    journal,
    row_ids,
    storage_of,
    stored_ids,
)

PATIENTS = "/api/v1/patients"
SCANS = "/api/v1/scans"


@pytest.fixture
def ct_bytes(tmp_path: Path) -> bytes:
    return write_ct_file(tmp_path / "ct.dcm", rows=8, columns=8).read_bytes()


@pytest.fixture
def app_config(tmp_path: Path) -> dict:
    return {"MEDSCAN_ORPHAN_GRACE_S": 60}


@pytest.fixture(autouse=True)
def empty_journal(app: Flask) -> None:
    """conftest empties tables in an order that can leave journal rows of earlier tests."""
    with app.app_context():
        db.session.execute(delete(ScanFileDeletion))
        db.session.commit()


def create_patient(client, name: str = "Иван") -> str:
    response = client.post(PATIENTS, json={"first_name": name, "last_name": "Иванов"})
    assert response.status_code == 201
    return response.get_json()["id"]


def upload(client, patient_id: str, content: bytes):
    data = {"patient_id": patient_id, "file": (io.BytesIO(content), "Иванов КТ.dcm")}
    return client.post(SCANS, data=data, content_type="multipart/form-data")


# --- races ------------------------------------------------------------------------------------


def test_uploads_racing_their_patients_deletion_keep_no_file(app, ct_bytes):
    """Many rounds of uploads in flight while their patient is deleted: 201 or 404, never a 500,
    and after each round files on disk are exactly the rows."""
    uploaders, answers = 4, []
    for _ in range(40):
        patient_id = create_patient(app.test_client())
        start = threading.Barrier(uploaders + 1)

        def send_upload(patient_id=patient_id, start=start) -> None:
            client = app.test_client()
            start.wait()
            response = upload(client, patient_id, ct_bytes)
            answers.append((response.status_code, response.get_json()))

        def delete_patient(patient_id=patient_id, start=start) -> None:
            start.wait()
            time.sleep(0.002 * len(answers) % 0.02)  # vary where the deletion lands
            assert app.test_client().delete(f"{PATIENTS}/{patient_id}").status_code == 204

        threads = [threading.Thread(target=send_upload) for _ in range(uploaders)]
        threads.append(threading.Thread(target=delete_patient))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert_consistent(app)
        assert row_ids(app) == set()  # every scan went with its patient
    assert len(answers) == 40 * uploaders  # no thread died
    statuses = {status for status, _ in answers}
    assert statuses <= {201, 404}, answers
    assert all(body == {"error": "Patient not found"} for status, body in answers if status == 404)


def test_upload_whose_patient_is_deleted_while_it_inserts_is_404(app, database_url, ct_bytes):
    """The deletion holds the patient's row while the upload inserts; it commits meanwhile."""
    client = app.test_client()
    patient_id = create_patient(client)
    engine = create_engine(database_url)
    answer = {}
    with engine.connect() as other:
        other.execute(delete(Patient).where(Patient.id == uuid.UUID(patient_id)))
        thread = threading.Thread(
            target=lambda: answer.update(response=upload(app.test_client(), patient_id, ct_bytes))
        )
        thread.start()
        time.sleep(0.5)  # the upload has seen its patient and waits on the row lock
        other.commit()
    thread.join()
    engine.dispose()
    response = answer["response"]
    assert response.status_code == 404
    assert response.get_json() == {"error": "Patient not found"}
    assert_consistent(app)


def test_deletes_racing_analyses_and_uploads_stay_consistent(app, ct_bytes):
    """Scan deletes, patient deletes and uploads of one patient at once, many rounds."""
    answers = []
    for _ in range(25):
        client = app.test_client()
        patient_id = create_patient(client)
        scan_ids = [upload(client, patient_id, ct_bytes).get_json()["id"] for _ in range(3)]
        start = threading.Barrier(5)

        def run(request, start=start) -> None:
            start.wait()
            answers.append(request(app.test_client()).status_code)

        requests = [
            lambda c, s=scan_ids[0]: c.delete(f"{SCANS}/{s}"),
            lambda c, s=scan_ids[1]: c.delete(f"{SCANS}/{s}"),
            lambda c, p=patient_id: c.delete(f"{PATIENTS}/{p}"),
            lambda c, p=patient_id: upload(c, p, ct_bytes),
            lambda c, p=patient_id: upload(c, p, ct_bytes),
        ]
        threads = [threading.Thread(target=run, args=(request,)) for request in requests]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert_consistent(app)
    assert len(answers) == 25 * 5 and set(answers) <= {201, 204, 404}, answers


# --- what a process killed at the dangerous moment leaves ---------------------------------


def test_scan_deletion_interrupted_after_commit_is_completed_by_the_sweep(app, ct_bytes):
    client = app.test_client()
    patient_id = create_patient(client)
    kept, deleted = (upload(client, patient_id, ct_bytes).get_json()["id"] for _ in range(2))
    delete_rows_as_a_killed_worker(app, delete(Scan).where(Scan.id == uuid.UUID(deleted)))
    assert stored_ids(app) == {kept, deleted} and journal(app) == {deleted}
    check = sweep_once(app)
    assert check.deletions_completed == 1 and check.orphans == []
    assert stored_ids(app) == {kept}
    assert_consistent(app)


def test_patient_deletion_interrupted_after_commit_is_completed_by_the_sweep(app, ct_bytes):
    """The cascade journals every scan of the patient, however the patient row went."""
    client = app.test_client()
    patient_id = create_patient(client)
    other_patient = create_patient(client, "Пётр")
    scans = {upload(client, patient_id, ct_bytes).get_json()["id"] for _ in range(3)}
    kept = upload(client, other_patient, ct_bytes).get_json()["id"]
    delete_rows_as_a_killed_worker(app, delete(Patient).where(Patient.id == uuid.UUID(patient_id)))
    assert journal(app) == scans
    for scan_id in scans:  # their files were uploaded long ago: no grace protects them
        age(storage_of(app).path(uuid.UUID(scan_id)), 3600)
    assert sweep_once(app).deletions_completed == 3
    assert stored_ids(app) == {kept}
    assert_consistent(app)


def test_file_renamed_in_without_its_row_is_removed_once_past_the_grace(app, ct_bytes, caplog):
    """A kill between the rename into storage and the INSERT's commit leaves an orphan; a
    young one may be a sibling worker's upload about to commit, and is left alone."""
    client = app.test_client()
    patient_id = create_patient(client)
    kept = upload(client, patient_id, ct_bytes).get_json()["id"]
    storage = storage_of(app)
    old, young = uuid.uuid4(), uuid.uuid4()
    for orphan in (old, young):
        storage.path(orphan).parent.mkdir(exist_ok=True)
        storage.path(orphan).write_bytes(ct_bytes)
    age(storage.path(old), 61)
    caplog.set_level(logging.WARNING)
    check = sweep_once(app)
    assert check.orphans_removed == 1 and check.recent_orphans == 1
    assert stored_ids(app) == {kept, str(young)}
    assert "removed 1 files without a scan row" in caplog.text
    age(storage.path(young), 61)
    sweep_once(app)
    assert_consistent(app)


def test_the_automatic_sweep_removes_nothing_while_the_scans_table_is_empty(app, runner, caplog):
    """Files with an empty scans table look like the wrong database, not like orphans."""
    storage = storage_of(app)
    orphan = storage.path(uuid.uuid4())
    orphan.parent.mkdir()
    orphan.write_bytes(b"scan")
    age(orphan, 3600)
    caplog.set_level(logging.ERROR)
    check = sweep_once(app)
    assert check.refused and orphan.exists()
    assert "1 files without a scan row kept" in caplog.text
    result = runner.invoke(args=["medscan", "check-storage", "--repair"])
    assert result.exit_code == 0, result.output
    assert not orphan.exists()


def test_the_upload_dates_its_file_at_the_rename(app, ct_bytes, tmp_path):
    """The grace counts from the rename into storage, not from when the body was written."""
    client = app.test_client()
    scan_id = upload(client, create_patient(client), ct_bytes).get_json()["id"]
    mtime = storage_of(app).path(uuid.UUID(scan_id)).stat().st_mtime
    assert time.time() - 5 < mtime <= time.time()


def test_one_sweep_at_a_time_per_storage(app):
    """Workers of one storage skip a sweep while a sibling runs one."""
    from medscan.storage import sweep_lock

    storage_of(app).root.mkdir(parents=True, exist_ok=True)
    with sweep_lock(storage_of(app)) as locked:
        assert locked
        # flock locks belong to the open file: another open file in this process is refused.
        assert sweep_once(app) is None
    assert sweep_once(app) is not None


# --- flask medscan check-storage ------------------------------------------------------------


def test_check_storage_lists_both_kinds_and_repairs_only_orphans(app, runner, ct_bytes):
    client = app.test_client()
    patient_id = create_patient(client)
    lost, kept = (upload(client, patient_id, ct_bytes).get_json()["id"] for _ in range(2))
    storage = storage_of(app)
    storage.path(uuid.UUID(lost)).unlink()
    orphan = storage.path(uuid.uuid4())
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"left by a crash")
    age(orphan, 120)

    result = runner.invoke(args=["medscan", "check-storage"])
    assert result.exit_code == 1
    assert f"row without file: scan {lost}" in result.output
    assert f"file without row: {orphan}" in result.output
    assert "DATA LOSS: 1 scans have no stored file" in result.output
    assert orphan.exists()

    result = runner.invoke(args=["medscan", "check-storage", "--repair"])
    assert result.exit_code == 1  # the lost file is still lost
    assert "1 removed" in result.output and not orphan.exists()
    assert row_ids(app) == {lost, kept}  # a row without a file is reported, never deleted

    client.delete(f"{SCANS}/{lost}")  # the operator accepts the loss
    result = runner.invoke(args=["medscan", "check-storage"])
    assert result.exit_code == 0, result.output
    assert "0 rows without files, 0 files without rows" in result.output


def test_check_storage_leaves_young_files_unless_told(app, runner):
    storage = storage_of(app)
    orphan = storage.path(uuid.uuid4())
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"maybe in flight")
    result = runner.invoke(args=["medscan", "check-storage", "--repair"])
    assert "1 younger than 60 s" in result.output and orphan.exists()
    result = runner.invoke(args=["medscan", "check-storage", "--repair", "--grace", "0"])
    assert result.exit_code == 0 and not orphan.exists()


def test_check_storage_reports_pending_deletions_and_completes_them(app, runner, ct_bytes):
    client = app.test_client()
    scan_id = upload(client, create_patient(client), ct_bytes).get_json()["id"]
    delete_rows_as_a_killed_worker(app, delete(Scan))
    result = runner.invoke(args=["medscan", "check-storage"])
    assert result.exit_code == 1 and "1 pending" in result.output
    result = runner.invoke(args=["medscan", "check-storage", "--repair"])
    assert result.exit_code == 0 and "1 completed" in result.output
    assert scan_id not in stored_ids(app)
    assert_consistent(app)
