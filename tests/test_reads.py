"""GET endpoints read outside any transaction, on the columns their schemas dump."""

from __future__ import annotations

import psycopg2.extensions
import pytest
from sqlalchemy import select

from medscan.reads import reads_engine
from medscan.scans.routes import SCAN_COLUMNS


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
