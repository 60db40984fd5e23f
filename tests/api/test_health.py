"""``GET /api/health``."""

from tests.conftest import make_app
from tests.helpers import assert_json_error


def test_health_ok(client):
    response = client.get("/api/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}


def test_health_503_when_the_database_is_unreachable(tmp_path):
    dead = "postgresql+psycopg2://postgres@127.0.0.1:1/nowhere?connect_timeout=2"
    app = make_app(dead, tmp_path)
    response = app.test_client().get("/api/health")
    assert_json_error(response, 503, "Database unavailable")
    assert response.headers["Retry-After"] == "5"
