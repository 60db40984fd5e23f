"""A real gunicorn (``gunicorn.conf.py`` as shipped) on a free port, for what only a server shows.

The Flask test client has no sockets: stalled and trickling clients, chunked framing and the
worker's threads exist only under gunicorn, so these tests start it as a subprocess on the test
database and talk to it over TCP.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.server.gunicorn import (
    free_port,
    kill_gunicorn,
    server_env,
    start_gunicorn,
    wait_until_listening,
)

REPO = Path(__file__).resolve().parents[2]
HEALTH = b"GET /api/health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
PATIENTS = b"GET /api/v1/patients HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
# gunicorn.conf.py as shipped: 2 workers x 4 threads.
REQUEST_THREADS = 8
# The MEDSCAN_BODY_TIMEOUT_S of the stalled-body tests.
BODY_TIMEOUT_S = 2
MIB = 2**20


@dataclass
class Server:
    """A running gunicorn: its port and the folder its uploads spool into."""

    port: int
    incoming: Path

    def connect(self, timeout: float = 10) -> socket.socket:
        """A new TCP connection to the server."""
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def exchange(self, raw: bytes, timeout: float = 10) -> bytes:
        """Send ``raw`` and read until the server closes or the timeout passes."""
        with self.connect(timeout) as sock:
            sock.sendall(raw)
            return read_answer(sock)


def stalled_upload(server: Server) -> socket.socket:
    """A scan upload that has sent 1.5 MiB of its 3 MiB body and then nothing: its socket."""
    part = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.dcm"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
    )
    head = (
        b"POST /api/v1/scans HTTP/1.1\r\nHost: test\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\n"
        b"Content-Length: %d\r\n\r\n" % (3 * MIB)
    )
    sock = server.connect(timeout=BODY_TIMEOUT_S + 10)
    sock.sendall(head + part + b"\0" * (3 * MIB // 2))
    return sock


def read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes, or until the socket's timeout."""
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return answer


@pytest.fixture
def start_server(database_url: str, tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start gunicorn with extra environment variables; it is killed after the test."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(**env: str) -> Server:
        port = free_port()
        process = start_gunicorn(REPO, server_env(tmp_path, port, database_url, **env))
        processes.append(process)
        wait_until_listening(process, port)
        server = Server(port, tmp_path / "scans" / ".incoming")
        deadline = time.monotonic() + 30
        while True:  # ready when both workers have loaded the app: health answers twice
            answers = [server.exchange(HEALTH) for _ in range(2)]
            if all(answer.startswith(b"HTTP/1.1 200") for answer in answers):
                return server
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn does not answer, see {tmp_path}/error.log")
            time.sleep(0.2)

    yield start
    for process in processes:
        kill_gunicorn(process)
