"""A real gunicorn (``gunicorn.conf.py`` as shipped) on a free port, for what only a server shows.

The Flask test client has no sockets: stalled and trickling clients, chunked framing and the
worker's threads exist only under gunicorn, so these tests start it as a subprocess on the test
database and talk to it over TCP.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEALTH = b"GET /api/health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
PATIENTS = b"GET /api/v1/patients HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"


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


def read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes, or until the socket's timeout."""
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return answer


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def start_server(database_url: str, tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start gunicorn with extra environment variables; it is killed after the test."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(**env: str) -> Server:
        port = free_port()
        settings = {
            **os.environ,
            "DATABASE_URL": database_url,
            "MEDSCAN_STORAGE_DIR": str(tmp_path / "scans"),
            "MEDSCAN_WORK_DIR": str(tmp_path / "work"),
            "MEDSCAN_LOG_LEVEL": "WARNING",
            "GUNICORN_BIND": f"127.0.0.1:{port}",
            "GUNICORN_ACCESS_LOG": str(tmp_path / "access.log"),
            "GUNICORN_ERROR_LOG": str(tmp_path / "error.log"),
            **env,
        }
        command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
        process = subprocess.Popen(command, cwd=REPO, env=settings, start_new_session=True)
        processes.append(process)
        server = Server(port, tmp_path / "scans" / ".incoming")
        deadline = time.monotonic() + 30
        while True:
            try:
                # Ready when every worker has loaded the app: two health checks answer.
                for _ in range(2):
                    assert server.exchange(HEALTH).startswith(b"HTTP/1.1 200")
                return server
            except (OSError, AssertionError) as error:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"gunicorn did not start, see {tmp_path}") from error
                time.sleep(0.2)

    yield start
    for process in processes:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
