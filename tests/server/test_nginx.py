"""deploy/nginx.conf in front of a real gunicorn: one request id, stalled bodies end at nginx."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from medscan.config import SETTINGS
from tests.server.conftest import (
    HEALTH,
    REPO,
    REQUEST_THREADS,
    Server,
    read_answer,
    stalled_upload,
)
from tests.server.gunicorn import free_port
from tests.tools import need


@pytest.fixture
def nginx(start_server, tmp_path: Path, request):
    """deploy/nginx.conf as shipped, pointed at a test gunicorn; yields (nginx, gunicorn).

    Parametrized indirectly with ``[(shipped, replacement), ...]``, it changes those lines.
    """
    binary = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    need(binary is not None, "nginx")
    app = start_server()
    port = free_port()
    conf = (REPO / "deploy" / "nginx.conf").read_text()
    for shipped, here in [
        ("user nginx;", "user root;"),
        ("pid /var/run/nginx.pid;", f"pid {tmp_path}/nginx.pid;"),
        ("error_log /dev/stderr warn;", f"error_log {tmp_path}/nginx-error.log warn;"),
        ("access_log /dev/stdout medscan;", f"access_log {tmp_path}/nginx-access.log medscan;"),
        ("server app:8000;", f"server 127.0.0.1:{app.port};"),
        ("listen 80 default_server;", f"listen 127.0.0.1:{port} default_server;"),
        *getattr(request, "param", ()),
    ]:
        assert shipped in conf
        conf = conf.replace(shipped, here)
    (tmp_path / "nginx.conf").write_text(conf)
    command = [binary, "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path), "-g", "daemon off;"]
    process = subprocess.Popen(command)
    proxy = Server(port, app.incoming)
    deadline = time.monotonic() + 10
    while True:
        try:
            proxy.connect(timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start, see {tmp_path}") from None
            time.sleep(0.1)
    yield proxy, app
    process.terminate()
    process.wait(timeout=10)


def request_ids(answer: bytes) -> list[str]:
    """Every X-Request-ID header of a raw answer."""
    head = answer.partition(b"\r\n\r\n")[0].decode()
    return re.findall(r"(?im)^x-request-id: *(.*?)\r?$", head)


def test_one_request_id_end_to_end(nginx):
    proxy, app = nginx
    for sent in (None, "client-id-1", "not a token", "x" * 200):
        header = f"X-Request-ID: {sent}\r\n" if sent else ""
        raw = f"GET /api/health HTTP/1.1\r\nHost: t\r\n{header}Connection: close\r\n\r\n"
        ids = request_ids(proxy.exchange(raw.encode()))
        assert len(ids) == 1
        if sent == "client-id-1":
            assert ids == [sent]
        else:
            assert re.fullmatch(r"[0-9a-f]{32}", ids[0])
        # The id nginx passes on is one the app keeps (and logs) as it is.
        direct = f"GET /api/health HTTP/1.1\r\nHost: t\r\nX-Request-ID: {ids[0]}\r\n"
        assert request_ids(app.exchange(direct.encode() + b"Connection: close\r\n\r\n")) == ids
    answer = proxy.exchange(b"GET /_error/404 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 404") and len(request_ids(answer)) == 1


def test_nginx_drops_a_body_as_the_app_would():
    """nginx's pause limit for a body is the app's MEDSCAN_BODY_TIMEOUT_S default."""
    conf = (REPO / "deploy" / "nginx.conf").read_text()
    app_default = dict(SETTINGS)["MEDSCAN_BODY_TIMEOUT_S"][1]
    assert re.search(rf"^\s*client_body_timeout {app_default}s;", conf, re.M)


@pytest.mark.parametrize(
    "nginx", [[("client_body_timeout 30s;", "client_body_timeout 1s;")]], indirect=True
)
def test_stalled_bodies_behind_nginx_leave_health_answering_and_free_the_app(nginx):
    proxy, app = nginx
    stalled = [stalled_upload(proxy) for _ in range(REQUEST_THREADS)]
    time.sleep(0.5)
    assert any(app.incoming.iterdir())  # the bodies reached the app's threads
    asked = time.monotonic()
    assert proxy.exchange(HEALTH, timeout=2).startswith(b"HTTP/1.1 200")
    assert time.monotonic() - asked < 2
    answers = []
    for sock in stalled:
        with sock:
            answers.append(read_answer(sock).partition(b"\r\n")[0])
    # nginx closes a connection whose body timed out without an answer (or with its 408 JSON).
    # A body the app refused at once (503 Server busy, the body left unread) reaches the client
    # as that 503, or as nginx's own 502 when nginx was still sending the body as the app let go.
    assert set(answers) <= {
        b"",
        b"HTTP/1.1 408 Request Time-out",
        b"HTTP/1.1 502 Bad Gateway",
        b"HTTP/1.1 503 SERVICE UNAVAILABLE",
    }
    time.sleep(0.5)
    assert not any(app.incoming.iterdir())  # nginx closed, the app let go of its files


def json_answer(answer: bytes) -> tuple[int, dict]:
    """The status and JSON body of a raw answer (fails on HTML or any other body)."""
    head, _, body = answer.partition(b"\r\n\r\n")
    assert re.search(rb"(?im)^content-type: application/json", head), answer[:300]
    return int(head.split()[1]), json.loads(body)


def long_request(line_length: int = 0, headers: str = "") -> bytes:
    """A GET whose request line has ``line_length`` bytes (a long search), with ``headers``."""
    target = "/api/health"
    if line_length:
        target = "/api/v1/patients?q="
        target += "a" * (line_length - len(f"GET {target} HTTP/1.1"))
    return f"GET {target} HTTP/1.1\r\nHost: t\r\n{headers}Connection: close\r\n\r\n".encode()


def test_what_nginx_lets_through_gunicorn_takes_so_every_answer_is_json(nginx):
    """nginx's large_client_header_buffers (4 8k) and gunicorn's limits agree: a request line,
    a header or a number of headers nginx lets through reaches the app; beyond, nginx answers
    (gunicorn's own limit answers would be HTML)."""
    proxy, _ = nginx
    app_limit = (400, "q: Longer than maximum length 500.")  # the app's answer, not nginx's
    for length in (4000, 4095, 6000, 8190):
        status, body = json_answer(proxy.exchange(long_request(length)))
        assert (status, body["error"]) == app_limit, length
    for length in (8191, 9000, 20000):
        assert json_answer(proxy.exchange(long_request(length))) == (414, {"error": "URI too long"})
    # nginx appends the client's address to X-Forwarded-For: the longest line it takes grows.
    for name in ("X-Note", "X-Forwarded-For"):
        header = f"{name}: " + "n" * (8189 - len(f"{name}: ")) + "\r\n"
        assert json_answer(proxy.exchange(long_request(headers=header)))[0] == 200, name
    too_long = "X-Note: " + "n" * 8200 + "\r\n"
    assert json_answer(proxy.exchange(long_request(headers=too_long)))[0] == 400
    for count, status in ((101, 200), (900, 200), (2000, 400), (20000, 400)):
        fields = "X:\n" * count
        assert json_answer(proxy.exchange(long_request(headers=fields)))[0] == status, count
