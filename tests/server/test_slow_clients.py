"""Stalled bodies, stalled headers and broken chunked framing against a real gunicorn."""

from __future__ import annotations

import json
import time

from tests.server.conftest import (
    BODY_TIMEOUT_S,
    HEALTH,
    PATIENTS,
    REQUEST_THREADS,
    read_answer,
    stalled_upload,
)


def status_and_body(answer: bytes) -> tuple[int, dict]:
    """The status code and the JSON body of a raw HTTP/1.1 answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_health_answers_while_every_thread_stalls_and_stalled_bodies_get_408(start_server):
    server = start_server(MEDSCAN_BODY_TIMEOUT_S=str(BODY_TIMEOUT_S))
    started = time.monotonic()
    stalled = [stalled_upload(server) for _ in range(REQUEST_THREADS)]
    time.sleep(0.3)
    assert any(server.incoming.iterdir())  # the admitted uploads are spooling

    while time.monotonic() - started < BODY_TIMEOUT_S - 0.3:
        asked = time.monotonic()
        answer = server.exchange(HEALTH, timeout=2)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert time.monotonic() - asked < 2
        answer = server.exchange(PATIENTS, timeout=2)
        assert answer.startswith(b"HTTP/1.1 200"), answer

    answers = []
    for sock in stalled:
        with sock:
            answers.append(status_and_body(read_answer(sock)))
    timed_out = [body for status, body in answers if status == 408]
    busy = [body for status, body in answers if status == 503]
    assert timed_out and len(timed_out) + len(busy) == REQUEST_THREADS
    assert timed_out[0] == {"error": "Request body timeout"}
    assert all(body == {"error": "Server busy"} for body in busy)
    assert not any(server.incoming.iterdir())


def test_body_requests_beyond_the_free_threads_are_refused_at_once(start_server):
    server = start_server(GUNICORN_WORKERS="1", MEDSCAN_BODY_TIMEOUT_S="30")
    stalled = [stalled_upload(server) for _ in range(3)]  # 4 threads, 1 kept for bodiless
    time.sleep(0.3)
    asked = time.monotonic()
    answer = server.exchange(
        b"POST /api/v1/patients HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"X-Request-ID: busy-1\r\nContent-Length: 2\r\n\r\n{}"
    )
    assert time.monotonic() - asked < 2
    assert b"\r\nRetry-After: 2\r\n" in answer
    assert b"\r\nX-Request-ID: busy-1\r\n" in answer
    assert status_and_body(answer) == (503, {"error": "Server busy"})
    assert server.exchange(HEALTH).startswith(b"HTTP/1.1 200")
    for sock in stalled:
        sock.close()


def test_stalled_headers_are_dropped_with_one_log_line(start_server, tmp_path):
    server = start_server(GUNICORN_HEADER_TIMEOUT="1")
    with server.connect() as sock:
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHo")
        asked = time.monotonic()
        assert read_answer(sock) == b""
        assert time.monotonic() - asked < 5
    log = (tmp_path / "error.log").read_text()
    warning = "[WARNING] [-] gunicorn.error: Request headers timed out (GUNICORN_HEADER_TIMEOUT)"
    assert warning in log
    assert "Traceback" not in log


def test_malformed_chunked_bodies_are_400(start_server):
    server = start_server()
    head = (
        b"POST /api/v1/patients HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    for chunks in (b"zz\r\n{}\r\n0\r\n\r\n", b"2\r\n{}0\r\n\r\n"):  # size zz, CRLF missing
        answer = server.exchange(head + chunks)
        assert status_and_body(answer) == (400, {"error": "Malformed request body"})


def test_bodies_a_view_leaves_unread_do_not_hold_threads_after_the_answer(start_server):
    server = start_server()
    unread = b"GET /api/health HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\nabcdefg"
    stalled = []
    for _ in range(REQUEST_THREADS):
        sock = server.connect()
        sock.sendall(unread)
        stalled.append(sock)
    time.sleep(0.2)
    for _ in range(10):
        asked = time.monotonic()
        assert server.exchange(HEALTH, timeout=2).startswith(b"HTTP/1.1 200")
        assert time.monotonic() - asked < 2
    for sock in stalled:
        sock.close()
