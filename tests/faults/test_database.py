"""A database that is not running, restarts, or holds a lock: 503, one log line, no names.

CONTRACT.md, Conventions: the server's own troubles are 503 with Retry-After; stale pooled
connections are replaced; lock waits are bounded; logs never carry SQL parameters.
"""

from __future__ import annotations

import io
import logging
import time
import uuid

import flask_migrate
import pytest
from sqlalchemy import create_engine, select, text, update
from sqlalchemy.exc import DBAPIError, OperationalError

from medscan.extensions import db
from medscan.models import Patient
from medscan.reads import reads_engine
from tests.conftest import make_app
from tests.faults.conftest import free_port

SECRET_NAME = "Секретова"
SOME_ID = str(uuid.uuid4())
JSON = {"Content-Type": "application/json"}


def every_kind_of_call(client) -> list:
    """One call of each endpoint family that needs the database."""
    upload = {"patient_id": SOME_ID, "file": (io.BytesIO(b"DICM" * 64), "ct.dcm")}
    return [
        client.get(f"/api/v1/patients?q={SECRET_NAME}"),
        client.get(f"/api/v1/patients/{SOME_ID}"),
        client.post("/api/v1/patients", json={"first_name": SECRET_NAME, "last_name": "X"}),
        client.put(f"/api/v1/patients/{SOME_ID}", json={"first_name": SECRET_NAME}),
        client.delete(f"/api/v1/patients/{SOME_ID}"),
        client.get("/api/v1/scans"),
        client.get(f"/api/v1/scans/{SOME_ID}"),
        client.post("/api/v1/scans", data=upload, content_type="multipart/form-data"),
        client.delete(f"/api/v1/scans/{SOME_ID}"),
        client.get(f"/api/scans/{SOME_ID}/file"),
        client.post(f"/api/scans/{SOME_ID}/analyze"),
        client.get("/api/bulk-runs"),
        client.get(f"/api/bulk-runs/{SOME_ID}/report.csv"),
    ]


def assert_unavailable(response) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.get_json() == {"error": "Database unavailable"}
    assert int(response.headers["Retry-After"]) > 0


def test_database_not_running_is_503_with_one_short_line_per_call(tmp_path, caplog):
    closed = f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/medscan"
    app = make_app(closed, tmp_path)
    caplog.set_level(logging.INFO)
    caplog.clear()
    responses = every_kind_of_call(app.test_client())
    for response in responses:
        assert_unavailable(response)
    assert app.test_client().get("/api/health").status_code == 503
    assert "Traceback" not in caplog.text
    assert SECRET_NAME not in caplog.text
    failures = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(failures) == len(responses) + 1  # one line each, health included
    assert all(len(r.getMessage()) < 300 and "\n" not in r.getMessage() for r in failures)
    assert list((tmp_path / "scans" / ".incoming").iterdir()) == []  # the spooled upload went


@pytest.fixture(scope="session")
def cluster_url(throwaway_postgres, tmp_path_factory) -> str:
    app = make_app(throwaway_postgres.url, tmp_path_factory.mktemp("cluster"))
    with app.app_context():
        flask_migrate.upgrade()
        db.engine.dispose()
    return throwaway_postgres.url


def test_first_requests_after_a_database_restart_succeed(throwaway_postgres, cluster_url, tmp_path):
    """Every pooled connection goes stale in a restart; none of them fails a request."""
    app = make_app(cluster_url, tmp_path)
    client = app.test_client()
    with app.app_context():
        for engine in (db.engine, reads_engine()):  # fill both pools with idle connections
            connections = [engine.connect() for _ in range(3)]
            for connection in connections:
                connection.execute(text("SELECT 1"))
                connection.close()
    throwaway_postgres.stop()
    throwaway_postgres.start()
    for _ in range(4):  # reads engine and default engine, more requests than pooled connections
        assert client.get("/api/v1/patients").status_code == 200
        created = client.post("/api/v1/patients", json={"first_name": "A", "last_name": "B"})
        assert created.status_code == 201
        assert client.get(f"/api/v1/patients/{created.get_json()['id']}").status_code == 200
    assert client.get("/api/health").status_code == 200
    throwaway_postgres.stop()
    try:  # while it is down: 503, and health says so
        assert_unavailable(client.get("/api/v1/patients"))
        assert_unavailable(
            client.post("/api/v1/patients", json={"first_name": "A", "last_name": "B"})
        )
        assert client.get("/api/health").status_code == 503
    finally:
        throwaway_postgres.start()
    assert client.get("/api/v1/patients").status_code == 200
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
        reads_engine().dispose()


@pytest.fixture
def app_config() -> dict:
    return {"MEDSCAN_DB_LOCK_TIMEOUT_S": 1, "MEDSCAN_DB_STATEMENT_TIMEOUT_S": 2}


def test_a_request_blocked_on_a_lock_gives_up_with_503(app, client, database_url, caplog):
    patient_id = client.post("/api/v1/patients", json={"first_name": "A", "last_name": "B"})
    patient_id = uuid.UUID(patient_id.get_json()["id"])
    holder = create_engine(database_url)
    caplog.set_level(logging.INFO)
    with holder.connect() as other:  # a writer that holds its lock and does not finish
        other.execute(update(Patient).where(Patient.id == patient_id).values(description="x"))
        started = time.monotonic()
        response = client.put(f"/api/v1/patients/{patient_id}", json={"first_name": SECRET_NAME})
        waited = time.monotonic() - started
        other.rollback()
    holder.dispose()
    assert_unavailable(response)
    assert 0.9 < waited < 5
    assert "Traceback" not in caplog.text and SECRET_NAME not in caplog.text


def test_statement_time_is_bounded_on_postgresql(app):
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("SQLite has no statement timeout; its lock wait is bounded above")
        started = time.monotonic()
        with pytest.raises(OperationalError, match="statement timeout"):
            db.session.execute(text("SELECT pg_sleep(10)"))
        assert time.monotonic() - started < 5


def test_failing_statements_never_log_their_parameters(app, caplog):
    """A statement that fails with a name bound in it: the 500's log withholds the name."""
    with app.app_context():
        for engine in {db.engine, reads_engine()}:
            with engine.connect() as connection, pytest.raises(DBAPIError) as failure:
                connection.execute(failing_statement())
            assert "[SQL parameters hidden" in str(failure.value)

    @app.get("/test-failing-statement")
    def failing_route():
        return {"rows": len(db.session.execute(failing_statement()).all())}

    caplog.set_level(logging.INFO)
    response = app.test_client().get("/test-failing-statement")
    assert response.status_code == 500
    assert response.get_json() == {"error": "Internal Server Error"}
    assert "Database error" in caplog.text and "failing_route" in caplog.text  # the stack
    assert SECRET_NAME not in caplog.text


def failing_statement():
    return select(Patient.id).where(Patient.first_name == SECRET_NAME, text("no_such_column = 1"))
