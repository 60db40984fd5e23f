"""The OpenAPI document as client generators and Swagger UI read it, for every operation.

These tests walk the whole document, so an operation added later is held to the same rules.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any

import openpyxl
import pytest

from tests.helpers import assert_json_error, post_archive, series_entries, zip_of

METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
OCTET_STREAM = "application/octet-stream"
ERROR_REF = "#/components/schemas/Error"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture
def spec(client) -> dict[str, Any]:
    return client.get("/api/openapi.json").get_json()


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Every ``(path, method, operation)`` of the document."""
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """``node``, or what its ``$ref`` names."""
    while "$ref" in node:
        name = node["$ref"].split("/")
        node = spec[name[1]][name[2]][name[3]]
    return node


def referenced_schemas(spec: dict[str, Any]) -> set[str]:
    """The component schemas that some operation uses, directly or through other schemas."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/components/schemas/") and ref.split("/")[-1] not in found:
                found.add(ref.split("/")[-1])
                walk(spec["components"]["schemas"][ref.split("/")[-1]])
            elif ref.startswith("#/components/responses/"):
                walk(spec["components"]["responses"][ref.split("/")[-1]])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec["paths"])
    return found


def test_every_operation_has_a_unique_short_camel_case_operation_id(spec):
    ids = [operation.get("operationId") for _, _, operation in operations(spec)]
    assert None not in ids, [f"{m} {p}" for p, m, o in operations(spec) if "operationId" not in o]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for operation_id in ids:
        assert re.fullmatch(r"[a-z][a-zA-Z0-9]{2,31}", operation_id), operation_id
    assert {"analyzeScan", "getBulkReportXlsx", "uploadScan", "listPatients"} <= set(ids)


def test_every_path_id_is_a_uuid(spec):
    for path, item in spec["paths"].items():
        for parameter in item.get("parameters", []):
            if parameter["in"] == "path":
                assert parameter["schema"]["format"] == "uuid", (path, parameter)


def test_every_error_answer_has_the_error_body(spec):
    for path, method, operation in operations(spec):
        for status, response in operation["responses"].items():
            if status == "default" or int(status) >= 400:
                content = resolve(spec, response).get("content", {})
                assert list(content) == ["application/json"], (method, path, status)
                assert content["application/json"]["schema"] == {"$ref": ERROR_REF}


def test_every_download_is_offered_as_a_file(spec):
    """A body that is not JSON is also an octet-stream file, which every generator can read."""
    downloads = set()
    for path, _method, operation in operations(spec):
        content = operation["responses"].get("200", {}).get("content", {})
        if content and "application/json" not in content:
            downloads.add(operation["operationId"])
            assert content[OCTET_STREAM]["schema"] == {"type": "string", "format": "binary"}
            for media_type, entry in content.items():
                expected = "string" if media_type.startswith("text/") else "binary"
                assert entry["schema"].get("format", "string") == expected, (path, media_type)
    assert downloads >= {"downloadScanFile", "getBulkReportXlsx", "getBulkReportCsv"}


def test_a_failed_analysis_result_is_the_result_schema_or_null(spec):
    result = spec["components"]["schemas"]["AnalyzeResponse"]["properties"]["result"]
    assert result["allOf"] == [{"$ref": "#/components/schemas/Result"}]
    assert result["nullable"] is True and "anyOf" not in result


def test_form_fields_are_never_nullable(spec):
    """A multipart field cannot be null; a nullable one makes generated clients send "None"."""
    for path, method, operation in operations(spec):
        form = operation.get("requestBody", {}).get("content", {}).get("multipart/form-data")
        if form:
            for name, field in resolve(spec, form["schema"])["properties"].items():
                assert not field.get("nullable"), (method, path, name)


def test_every_schema_property_shows_a_realistic_value(spec):
    """Swagger UI shows "string" for a bare string and additionalProp1 for a free-form object
    (formats such as uuid and date-time, enums, numbers and nested schemas show well alone)."""
    schemas = spec["components"]["schemas"]
    for name in referenced_schemas(spec):
        for field_name, field in schemas[name]["properties"].items():
            bare_string = field.get("type") == "string" and not {"format", "enum"} & set(field)
            free_object = field.get("type") == "object" and "properties" not in field
            if bare_string or free_object:
                assert "example" in field, f"{name}.{field_name}"


def test_a_malformed_path_id_is_the_resources_404(spec, client):
    """Documented as a UUID, a path id that is not one still answers the resource's 404."""
    checked = 0
    for path, method, operation in operations(spec):
        if "{" in path and "requestBody" not in operation:
            response = client.open(re.sub(r"{[^}]+}", "not-a-uuid", path), method=method.upper())
            assert_json_error(response, 404)
            assert response.get_json()["error"].endswith("not found"), (method, path)
            checked += 1
    assert checked >= 8


@pytest.mark.parametrize("suffix", ["report.xlsx", "report.csv"])
def test_reports_are_octet_streams_for_a_client_that_asks(client, suffix, tmp_path):
    run_id = post_archive(client, zip_of(series_entries(tmp_path, "study", 2))).get_json()["id"]
    url = f"/api/bulk-runs/{run_id}/{suffix}"
    default = client.get(url)
    asked = client.get(url, headers={"Accept": OCTET_STREAM})
    browser = client.get(url, headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert default.mimetype in ("text/csv", XLSX) and browser.mimetype == default.mimetype
    assert asked.mimetype == OCTET_STREAM
    assert content(asked.get_data(), suffix) == content(default.get_data(), suffix)


def content(body: bytes, suffix: str) -> object:
    """What a report file says (a workbook's own creation time aside)."""
    if suffix.endswith(".csv"):
        return body
    workbook = openpyxl.load_workbook(io.BytesIO(body), read_only=True)
    return {sheet.title: list(sheet.values) for sheet in workbook.worksheets}


def test_docs_serve_swagger_ui_5(client):
    bundle = client.get("/api/docs/assets/swagger-ui-bundle.js").get_data(as_text=True)
    assert re.search(r'PACKAGE_VERSION:"5\.\d+\.\d+"', bundle)
