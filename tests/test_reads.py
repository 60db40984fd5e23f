"""GET endpoints read outside any transaction, on the columns their schemas dump."""

from __future__ import annotations

import psycopg2.extensions
import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from medscan.reads import reads_engine
from medscan.scans.routes import SCAN_COLUMNS
from tests.helpers import BULK_URL, post_archive, series_entries, zip_of


def test_reads_leave_no_transaction_open_on_postgresql(app):
    with app.app_context():
        engine = reads_engine()
        if engine.dialect.name != "postgresql":
            pytest.skip("SQLite's driver starts no transaction for a SELECT")
        with engine.connect() as connection:
            connection.execute(select(1)).one()
            driver = connection.connection.dbapi_connection
            assert driver.autocommit
            assert driver.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE


def test_scan_lists_do_not_read_stored_reports():
    names = {column.key for column in SCAN_COLUMNS}
    assert names == {"id", "patient_id", "description", "file_name", "created_at", "updated_at"}


def test_bulk_run_gets_leave_the_session_alone(client, tmp_path):
    archive = zip_of(series_entries(tmp_path, "s1", 2) | {"notes.txt": b"x"})
    run_id = post_archive(client, archive).get_json()["id"]
    sessions_begun = []

    def record(session, transaction, connection) -> None:
        sessions_begun.append(session)

    event.listen(Session, "after_begin", record)
    try:
        for path in ("", f"/{run_id}", f"/{run_id}/report.xlsx", f"/{run_id}/report.csv"):
            assert client.get(BULK_URL + path).status_code == 200, path
    finally:
        event.remove(Session, "after_begin", record)
    assert sessions_begun == []
