"""Every error is a JSON body ``{"error": ...}``, never an HTML page."""

from __future__ import annotations

import pytest

from medscan.extensions import db
from medscan.models import Patient
from medscan.safezip import (
    CorruptedZip,
    EmptyZip,
    NotAZip,
    NotEnoughDiskSpace,
    UnpackLimitExceeded,
)
from tests.helpers import assert_json_error


def test_unknown_route_is_json_404(client):
    assert_json_error(client.get("/no/such/route"), 404, "Not Found")
    assert_json_error(client.get("/api/v1/nothing"), 404)


def test_wrong_method_is_json_405_with_allow(client):
    response = client.delete("/api/v1/patients")
    assert_json_error(response, 405, "Method Not Allowed")
    assert "POST" in response.headers["Allow"]


@pytest.fixture
def crashing_app(app):
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.get("/api/v1/crash")
    def crash():
        db.session.add(Patient(first_name="Half", last_name="Written"))
        db.session.flush()
        raise RuntimeError("secret internal detail")

    return app


def test_crash_is_json_500_rolled_back_and_logged(crashing_app, caplog):
    response = crashing_app.test_client().get("/api/v1/crash")
    body = assert_json_error(response, 500, "Internal Server Error")
    assert "secret" not in response.get_data(as_text=True)
    assert "details" not in body
    logged = [str(r.exc_info[1]) for r in caplog.records if r.exc_info]
    assert any("secret internal detail" in text for text in logged)
    with crashing_app.app_context():
        assert db.session.query(Patient).count() == 0


def test_disk_space_refusal_is_503_with_retry_after(app):
    from medscan.errors import archive_error
    from medscan.safezip import NotEnoughDiskSpace

    with app.app_context():
        response = archive_error(NotEnoughDiskSpace(detail="10 bytes free"))
    assert_json_error(response, 503, "Not enough disk space")
    assert response.headers["Retry-After"] == "60"


@pytest.mark.parametrize(
    ("refusal", "status"),
    [
        (UnpackLimitExceeded("Too many ZIP entries. Max 5"), 413),
        (NotEnoughDiskSpace(), 503),
        (NotAZip(), 400),
        (CorruptedZip(), 400),
        (EmptyZip(), 400),
    ],
    ids=lambda value: type(value).__name__,
)
def test_archive_refusals_get_their_status_here_not_from_the_library(app, refusal, status):
    """The ZIP library's errors carry no HTTP status; ``medscan.errors`` maps them."""
    from medscan.errors import archive_error

    assert not hasattr(refusal, "status")
    with app.app_context():
        response = archive_error(refusal)
    assert_json_error(response, status, refusal.message)
    assert ("Retry-After" in response.headers) == (status == 503)
