"""Model rules that hold on both databases."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from medscan.extensions import db
from medscan.models import BulkRun, BulkRunItem, BulkRunSkippedFile, Patient, Scan


def test_text_from_files_is_stored_even_with_nul_characters(app):
    """PostgreSQL refuses NUL in text and JSONB; hostile DICOM UIDs and entry names carry it."""
    now = datetime.now(UTC)
    with app.app_context():
        patient = Patient(first_name="A", last_name="B")
        scan = Scan(
            id=uuid.uuid4(),
            patient=patient,
            file_name="x.dcm",
            content_kind="dicom",
            size_bytes=1,
            sha256="0" * 64,
            study_uid="1.2\x003",
            series_uid="9" * 200,
            report_json={"path_to_study": "a\x00b"},
            analysis_error="bad\x00",
        )
        run = BulkRun(
            id=uuid.uuid4(),
            file_name="b.zip",
            created_at=now,
            finished_at=now,
            status="succeeded",
            studies=1,
            succeeded=0,
            failed=1,
            skipped=1,
            model_name="stub",
            model_version="1",
            threshold=0.5,
            items=[BulkRunItem(position=0, report={"path_to_study": "p\x00"}, error="e\x00")],
            skipped_files=[BulkRunSkippedFile(position=0, path="s\x00", reason="r\x00")],
        )
        db.session.add_all([scan, run])
        db.session.commit()
        db.session.expire_all()
        scan = db.session.get(Scan, scan.id)
        assert scan.study_uid == "1.2\ufffd3" and scan.series_uid == "9" * 200
        assert scan.report_json == {"path_to_study": "a\ufffdb"}
        run = db.session.get(BulkRun, run.id)
        assert run.items[0].report == {"path_to_study": "p\ufffd"}
        assert run.skipped_files[0].path == "s\ufffd"


def test_timestamps_come_back_timezone_aware_utc(app):
    with app.app_context():
        patient = Patient(first_name="A", last_name="B")
        db.session.add(patient)
        db.session.commit()
        db.session.expire_all()
        assert db.session.get(Patient, patient.id).created_at.tzinfo == UTC


def test_table_counts_stay_exact_through_inserts_cascades_and_deletes(app):
    from sqlalchemy import delete, func, select

    from medscan.models import TableCount

    def counts() -> dict[str, int]:
        stored = dict(db.session.execute(select(TableCount.table_name, TableCount.row_count)).all())
        real = {
            "patients": db.session.scalar(select(func.count()).select_from(Patient)),
            "scans": db.session.scalar(select(func.count()).select_from(Scan)),
            "bulk_runs": db.session.scalar(select(func.count()).select_from(BulkRun)),
        }
        assert stored == real
        return stored

    with app.app_context():
        patients = [Patient(first_name=f"P{i}", last_name="X") for i in range(5)]
        db.session.add_all(patients)
        db.session.flush()
        db.session.add_all(
            Scan(
                id=uuid.uuid4(),
                patient=patients[i % 2],
                file_name="x.dcm",
                content_kind="dicom",
                size_bytes=1,
                sha256="0" * 64,
            )
            for i in range(4)
        )
        db.session.commit()
        assert counts() == {"patients": 5, "scans": 4, "bulk_runs": 0}
        db.session.delete(patients[0])  # its 2 scans go by ON DELETE CASCADE
        db.session.commit()
        assert counts() == {"patients": 4, "scans": 2, "bulk_runs": 0}
        db.session.execute(delete(Patient))
        db.session.rollback()  # a rolled-back delete changes nothing
        assert counts()["patients"] == 4
        db.session.execute(delete(Patient))
        db.session.commit()
        assert counts() == {"patients": 0, "scans": 0, "bulk_runs": 0}
