"""kill -9 of gunicorn processes under load: storage and rows agree after the next start.

The deterministic leftovers of each dangerous moment are in tests/test_consistency.py; here the
kills land wherever they land, many times, on a real server.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import uuid
from contextlib import suppress
from http.client import HTTPException

from sqlalchemy import delete

from medscan.models import Scan
from tests.dicom_factory import write_ct_file
from tests.faults.conftest import wait_until
from tests.helpers import (
    age,
    assert_consistent,
    delete_rows_as_a_killed_worker,
    journal,
    row_ids,
    storage_of,
    stored_ids,
)

BOUNDARY = "medscan-test-boundary"
# Orphans younger than this are left alone: above the 1 s lock timeout given to the server.
GRACE_S = 3


def multipart(patient_id: str, content: bytes) -> tuple[bytes, dict[str, str]]:
    body = (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="patient_id"\r\n\r\n'
            f"{patient_id}\r\n--{BOUNDARY}\r\n"
            'Content-Disposition: form-data; name="file"; filename="ct.dcm"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def patient_life(server, content: bytes) -> None:
    """Create a patient, upload two scans, delete one, then the patient (errors ignored)."""
    body = b'{"first_name": "Kill", "last_name": "Test"}'
    patient = server.request("POST", "/api/v1/patients", body, {"Content-Type": "application/json"})
    patient_id = patient.json()["id"]
    scans = []
    for _ in range(2):
        answer = server.request("POST", "/api/v1/scans", *multipart(patient_id, content))
        if answer.status == 201:
            scans.append(answer.json()["id"])
    if scans:
        server.request("DELETE", f"/api/v1/scans/{scans[0]}")
    server.request("DELETE", f"/api/v1/patients/{patient_id}")


def test_workers_killed_at_random_moments_leave_nothing_after_the_next_start(
    app, database_url, gunicorn, tmp_path
):
    content = write_ct_file(tmp_path / "ct.dcm", rows=64, columns=64).read_bytes()
    settings = {"MEDSCAN_ORPHAN_GRACE_S": str(GRACE_S), "MEDSCAN_DB_LOCK_TIMEOUT_S": "1"}
    server = gunicorn(database_url, **settings)
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            with suppress(
                OSError, HTTPException, ValueError, KeyError
            ):  # the worker died under a request
                patient_life(server, content)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(5):
            time.sleep(random.uniform(0.1, 0.5))
            (worker,) = server.workers()
            os.kill(worker, signal.SIGKILL)
            assert wait_until(lambda w=worker: server.workers() not in ([], [w]), 20)
            assert wait_until(server.healthy, 20)
        time.sleep(random.uniform(0.1, 0.5))
        os.killpg(server.process.pid, signal.SIGKILL)  # the last blow takes the master too
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    server.process.wait()
    leftovers = (stored_ids(app, spooled=True) ^ row_ids(app)) | journal(app)
    print(f"left by the kills: {len(leftovers)} files, rows or journal entries out of step")
    time.sleep(GRACE_S)  # nothing is in flight now: every orphan is past the grace
    gunicorn(database_url, **settings)  # its first request starts the reconciliation
    assert wait_until(lambda: consistent(app), 15), (stored_ids(app), row_ids(app), journal(app))
    assert_consistent(app)


def consistent(app) -> bool:
    return stored_ids(app) == row_ids(app) and not journal(app)


def test_start_completes_an_interrupted_deletion_and_removes_an_orphan(
    app, database_url, gunicorn, tmp_path
):
    """The exact leftovers of the two dangerous kills, then a start of the real server."""
    content = write_ct_file(tmp_path / "ct.dcm", rows=8, columns=8).read_bytes()
    first = gunicorn(database_url)
    body = b'{"first_name": "Kill", "last_name": "Test"}'
    patient = first.request("POST", "/api/v1/patients", body, {"Content-Type": "application/json"})
    scans = [
        first.request("POST", "/api/v1/scans", *multipart(patient.json()["id"], content)).json()
        for _ in range(2)
    ]
    os.killpg(first.process.pid, signal.SIGKILL)
    first.process.wait()
    kept, deleted = (uuid.UUID(scan["id"]) for scan in scans)
    delete_rows_as_a_killed_worker(app, delete(Scan).where(Scan.id == deleted))
    orphan = storage_of(app).path(uuid.uuid4())
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(content)  # renamed in, its INSERT never committed
    age(orphan, 3600)
    assert stored_ids(app) == {str(kept), str(deleted), str(uuid.UUID(orphan.name))}
    server = gunicorn(database_url)
    assert wait_until(lambda: consistent(app), 15)
    assert stored_ids(app) == {str(kept)}
    logged = ("completed 1 interrupted deletions", "removed 1 files without a scan row")
    assert wait_until(lambda: all(line in server.log.read_text() for line in logged), 5)
