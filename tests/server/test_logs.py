"""gunicorn's and the app's log lines in one format (text or JSON), each with its request id;
the control socket is per instance or off."""

from __future__ import annotations

import http.client
import json
import logging
import re
import stat
import time
import urllib.parse
import uuid
from pathlib import Path

from medscan.logs import RedactRequests
from tests.helpers import series_entries, zip_of
from tests.server.conftest import Server

NAME = "Семенова"  # a patient's name: in a body, a search and an archive's name
# The same name as gunicorn quotes bytes it could not parse (decoded as Latin-1).
RAW_NAME = NAME.encode().decode("latin-1")
TEXT_LINE = re.compile(r"\[[\d :,-]+\] \[\d+\] \[[A-Z]+\] \[([^\]]+)\] [\w.]+: .+")


def call(server: Server, method: str, path: str, request_id: str, **kwargs) -> int:
    """One request with ``X-Request-ID``; its status."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    headers = {"X-Request-ID": request_id, **kwargs.pop("headers", {})}
    connection.request(method, path, headers=headers, **kwargs)
    status = connection.getresponse().status
    connection.close()
    return status


def wait_for_access_lines(log: Path, ids: dict[str, str]) -> None:
    """gunicorn writes an access line after the answer: wait (up to 10 s) for all of them."""
    deadline = time.monotonic() + 10
    while not all(rid in log.read_text(encoding="utf-8") for rid in ids.values()):
        assert time.monotonic() < deadline, "access lines missing"
        time.sleep(0.05)


def exercise(server: Server, tmp_path: Path) -> dict[str, str]:
    """A create, a search and a bulk run naming the patient; the request id of each."""
    ids = {what: f"{what}-{uuid.uuid4().hex[:8]}" for what in ("create", "search", "bulk")}
    body = json.dumps({"first_name": NAME, "last_name": NAME})
    json_type = {"Content-Type": "application/json"}
    assert call(server, "POST", "/api/v1/patients", ids["create"], body=body, headers=json_type)
    query = urllib.parse.urlencode({"q": NAME})
    assert call(server, "GET", f"/api/v1/patients?{query}", ids["search"]) == 200
    archive = zip_of(series_entries(tmp_path, f"{NAME}/study", 2))
    form = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="'
        + f"{NAME}.zip".encode()
        + b'"\r\nContent-Type: application/zip\r\n\r\n'
        + archive
        + b"\r\n--b--\r\n"
    )
    multipart = {"Content-Type": "multipart/form-data; boundary=b"}
    assert call(server, "POST", "/api/bulk-runs", ids["bulk"], body=form, headers=multipart) == 201
    # Raw UTF-8 in the request line: gunicorn refuses it (400) and logs why, without the line.
    raw = f"GET /api/v1/patients?q={NAME} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    assert server.exchange(raw.encode()).startswith(b"HTTP/1.1 400")
    wait_for_access_lines(tmp_path / "access.log", ids)
    return ids


def test_json_logs_carry_the_request_id_on_every_line_and_no_names(start_server, tmp_path):
    server = start_server(MEDSCAN_LOG_FORMAT="json", MEDSCAN_LOG_LEVEL="INFO")
    ids = exercise(server, tmp_path)
    logs = {}
    for name in ("error.log", "access.log"):
        text = (tmp_path / name).read_text(encoding="utf-8")
        assert NAME not in text and RAW_NAME not in text and "q=" not in text
        logs[name] = [json.loads(line) for line in text.splitlines()]
        assert all(
            {"timestamp", "level", "logger", "request_id", "message"} <= set(line)
            for line in logs[name]
        )
    access = {line["request_id"]: line for line in logs["access.log"]}
    assert access[ids["search"]]["path"] == "/api/v1/patients"
    assert access[ids["search"]]["status"] == 200 and access[ids["bulk"]]["method"] == "POST"
    assert {line["logger"] for line in logs["access.log"]} == {"gunicorn.access"}
    errors = logs["error.log"]
    progress = [line for line in errors if line["message"].startswith("bulk run: study")]
    assert progress and all(line["request_id"] == ids["bulk"] for line in progress)
    assert any(line["logger"] == "gunicorn.error" for line in errors)  # "Booting worker"...
    # Only the server warns that the API is open: once per worker (a worker may still boot).
    warned = [line["process"] for line in errors if "MEDSCAN_API_KEYS is not" in line["message"]]
    assert warned and len(set(warned)) == len(warned)


def test_text_logs_of_gunicorn_and_the_app_share_one_format(start_server, tmp_path):
    server = start_server(MEDSCAN_LOG_LEVEL="INFO")
    ids = exercise(server, tmp_path)
    error_log = (tmp_path / "error.log").read_text(encoding="utf-8").splitlines()
    access_log = (tmp_path / "access.log").read_text(encoding="utf-8").splitlines()
    assert all(TEXT_LINE.fullmatch(line) for line in error_log + access_log)
    assert NAME not in "".join(error_log + access_log)
    assert "Invalid request from ip=127.0.0.1: Invalid HTTP request line" in "".join(error_log)
    assert {" gunicorn.error: ", " medscan: "} <= {
        " " + line.split("] ", 4)[4].split(": ")[0] + ": " for line in error_log
    }
    access_ids = [TEXT_LINE.fullmatch(line)[1] for line in access_log]
    assert set(ids.values()) <= set(access_ids)


def test_the_control_socket_is_off_or_the_instances_own(start_server, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    start_server(HOME=str(home), XDG_RUNTIME_DIR="")
    assert not (home / ".gunicorn").exists()  # gunicorn's default, shared by all instances
    own = tmp_path / "ctl" / "medscan.ctl"
    start_server(HOME=str(home), XDG_RUNTIME_DIR="", GUNICORN_CONTROL_SOCKET=str(own))
    assert stat.S_ISSOCK(own.stat().st_mode) and not (home / ".gunicorn").exists()


def test_a_request_that_fails_in_gunicorn_is_logged_by_its_path():
    """gunicorn logs "Error handling request GET <uri>" with the query string: cut to the path."""
    record = logging.LogRecord(
        "gunicorn.error",
        logging.ERROR,
        __file__,
        1,
        "Error handling request %s %s",
        ("GET", f"/api/v1/patients?q={NAME}"),
        None,
    )
    assert RedactRequests().filter(record)
    assert record.getMessage() == "Error handling request GET /api/v1/patients"
