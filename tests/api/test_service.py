"""API keys, CORS, request ids, logs and the OpenAPI document (CONTRACT.md, Service and Auth)."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from medscan.logs import RequestIdFilter
from tests.helpers import CONTRACT_KEYS, assert_json_error

KEY = "s3cret-key"


class ReadCounter(io.BytesIO):
    """A request body that counts the bytes the app reads from it."""

    read_bytes = 0

    def read(self, size=-1):
        data = super().read(size)
        self.read_bytes += len(data)
        return data

    def readinto(self, buffer):
        count = super().readinto(buffer)
        self.read_bytes += count
        return count


class TestApiKeys:
    @pytest.fixture
    def app_config(self):
        return {"MEDSCAN_API_KEYS": (KEY, "second-key")}

    @pytest.mark.parametrize(
        "path", ["/api/v1/patients", "/api/bulk-runs", "/api/v1/scans", "/api/no/such/route"]
    )
    def test_closed_routes_need_a_key(self, client, path):
        response = client.get(path)
        assert_json_error(response, 401, "Unauthorized")
        assert response.headers["WWW-Authenticate"].lower().startswith("bearer")
        assert_json_error(client.get(path, headers={"Authorization": "Bearer wrong"}), 401)
        assert_json_error(client.get(path, headers={"X-API-Key": KEY + "x"}), 401)

    def test_bearer_or_x_api_key_opens_them(self, client):
        assert (
            client.get("/api/v1/patients", headers={"Authorization": f"Bearer {KEY}"}).status_code
            == 200
        )
        assert (
            client.get("/api/v1/patients", headers={"X-API-Key": "second-key"}).status_code == 200
        )
        # an unknown route with a key is an honest 404
        assert_json_error(client.get("/api/nothing", headers={"X-API-Key": KEY}), 404)

    @pytest.mark.parametrize(
        "path", ["/api/health", "/api/openapi.json", "/api/docs", "/api/docs/assets/swagger-ui.css"]
    )
    def test_open_routes_need_no_key(self, client, path):
        assert client.get(path).status_code == 200

    def test_upload_without_key_is_refused_before_reading_the_body(self, client, app):
        body = ReadCounter(b"--b\r\n" + bytes(2**20))
        response = client.post(
            "/api/bulk-runs",
            input_stream=body,
            content_type="multipart/form-data; boundary=b",
            headers={"Content-Length": str(len(body.getvalue()))},
        )
        assert_json_error(response, 401, "Unauthorized")
        assert body.read_bytes == 0
        assert not any(Path(app.config["MEDSCAN_WORK_DIR"]).iterdir())

    def test_keys_never_reach_the_logs(self, client, caplog):
        caplog.set_level(logging.DEBUG)
        client.get("/api/v1/patients", headers={"Authorization": f"Bearer {KEY}"})
        client.get("/api/v1/patients", headers={"X-API-Key": "wrong-key-value"})
        assert KEY not in caplog.text and "wrong-key-value" not in caplog.text


def test_only_the_server_warns_that_the_api_is_open(app, caplog):
    """Building the app (every CLI command does) is quiet; gunicorn's workers call warn_if_open."""
    from medscan import create_app
    from medscan.auth import warn_if_open

    folders = {key: app.config[key] for key in ("MEDSCAN_STORAGE_DIR", "MEDSCAN_WORK_DIR")}
    with caplog.at_level(logging.WARNING):
        create_app(folders)
    assert "MEDSCAN_API_KEYS" not in caplog.text
    with caplog.at_level(logging.WARNING):
        warn_if_open(create_app({**folders, "MEDSCAN_API_KEYS": (KEY,)}))
    assert "MEDSCAN_API_KEYS" not in caplog.text
    with caplog.at_level(logging.WARNING):
        warn_if_open(app)
    assert "MEDSCAN_API_KEYS is not set" in caplog.text


class TestCors:
    @pytest.fixture
    def app_config(self):
        return {"MEDSCAN_CORS_ORIGINS": ("https://viewer.example",), "MEDSCAN_API_KEYS": (KEY,)}

    def test_allowed_origin_gets_cors_and_exposed_headers(self, client):
        response = client.get(
            "/api/v1/patients", headers={"Origin": "https://viewer.example", "X-API-Key": KEY}
        )
        assert response.headers["Access-Control-Allow-Origin"] == "https://viewer.example"
        assert "Content-Disposition" in response.headers["Access-Control-Expose-Headers"]

    def test_preflight_needs_no_key(self, client):
        response = client.options(
            "/api/v1/patients",
            headers={
                "Origin": "https://viewer.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "Authorization, Content-Type",
            },
        )
        assert response.status_code == 200
        assert response.headers["Access-Control-Allow-Origin"] == "https://viewer.example"
        assert "authorization" in response.headers["Access-Control-Allow-Headers"].lower()

    def test_other_origins_get_no_allow_origin(self, client):
        response = client.get("/api/health", headers={"Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in response.headers


def test_no_cors_by_default(client):
    response = client.get("/api/health", headers={"Origin": "https://viewer.example"})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_request_id_is_kept_or_made(client):
    assert (
        client.get("/api/health", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"]
        == "abc-123"
    )
    made = client.get("/api/health", headers={"X-Request-ID": "bad id; drop table"})
    assert len(made.headers["X-Request-ID"]) == 32
    assert client.get("/nope").headers["X-Request-ID"]  # errors carry one too


def test_log_lines_carry_the_request_id(app):
    seen = []

    class Collect(logging.Handler):
        def emit(self, record):
            seen.append(record.request_id)

    handler = Collect()
    handler.addFilter(RequestIdFilter())
    app.logger.addHandler(handler)
    try:
        with app.test_request_context("/api/health", headers={"X-Request-ID": "rid-42"}):
            app.preprocess_request()
            app.logger.warning("inside")
    finally:
        app.logger.removeHandler(handler)
    assert seen == ["rid-42"]


def test_openapi_document_is_valid_and_complete(client):
    spec = client.get("/api/openapi.json").get_json()
    validate(spec)
    assert spec["openapi"].startswith("3.")
    operations = {(path, method) for path, item in spec["paths"].items() for method in item}
    assert operations >= {
        ("/api/v1/patients", "get"),
        ("/api/v1/patients", "post"),
        ("/api/v1/patients/{patient_id}", "get"),
        ("/api/v1/patients/{patient_id}", "put"),
        ("/api/v1/patients/{patient_id}", "delete"),
        ("/api/v1/scans", "get"),
        ("/api/v1/scans", "post"),
        ("/api/v1/scans/{scan_id}", "get"),
        ("/api/v1/scans/{scan_id}", "put"),
        ("/api/v1/scans/{scan_id}", "delete"),
        ("/api/scans/{scan_id}/file", "get"),
        ("/api/scans/{scan_id}/analyze", "post"),
        ("/api/scans/{scan_id}/report", "get"),
        ("/api/bulk-runs", "post"),
        ("/api/bulk-runs", "get"),
        ("/api/bulk-runs/{run_id}", "get"),
        ("/api/bulk-runs/{run_id}/report.xlsx", "get"),
        ("/api/bulk-runs/{run_id}/report.csv", "get"),
        ("/api/health", "get"),
    }
    report = spec["components"]["schemas"]["Report"]
    assert tuple(report["properties"]) == CONTRACT_KEYS
    assert spec["components"]["schemas"]["Error"]["required"] == ["error"]
    upload = spec["paths"]["/api/v1/scans"]["post"]["requestBody"]["content"]
    assert set(upload["multipart/form-data"]["schema"]["$ref"].split("/")[-1:]) == {"ScanUpload"}
    assert spec["paths"]["/api/health"]["get"]["security"] == []


def test_docs_page_uses_no_cdn(client):
    page = client.get("/api/docs").get_data(as_text=True)
    assert "/api/docs/assets/swagger-ui-bundle.js" in page
    assert "cdn" not in page.lower() and "https://" not in page
    assert client.get("/api/docs/assets/swagger-ui-bundle.js").status_code == 200
