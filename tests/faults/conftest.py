"""Real faults: a PostgreSQL cluster of the tests' own that they stop and start, gunicorn
processes they kill -9, a small file system they fill.

Never the shared PostgreSQL on 5432: the throw-away cluster lives in a temp folder, on a free
port, with its socket in that folder. Without the tools (initdb, mount) these tests skip,
unless ``MEDSCAN_REQUIRE_TOOLS=1`` (CI), which makes a missing tool a failure.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.tools import need

REPO = Path(__file__).resolve().parents[2]
# The newest PostgreSQL server installed (Debian layout: /usr/lib/postgresql/<major>/bin).
PG_BINS = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
PG_BIN = PG_BINS[-1].parent if PG_BINS else Path("/nonexistent")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition, timeout: float, step: float = 0.1) -> bool:
    """Whether ``condition()`` became true within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


@dataclass
class Cluster:
    """A PostgreSQL server of the tests' own."""

    folder: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def pg_ctl(self, *args: str) -> None:
        command = [str(PG_BIN / "pg_ctl"), "-D", str(self.folder / "data"), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        self.pg_ctl("-o", options, "-l", str(self.folder / "server.log"), "-w", "start")

    def stop(self) -> None:
        self.pg_ctl("-m", "fast", "-w", "stop")


@pytest.fixture(scope="session")
def throwaway_postgres() -> Iterator[Cluster]:
    """A fresh cluster (initdb) on a free port, removed at the end of the session."""
    need((PG_BIN / "initdb").exists(), "PostgreSQL's initdb")
    folder = Path(tempfile.mkdtemp(prefix="medscan-faults-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        initdb = ["runuser", "-u", "postgres", "--", str(PG_BIN / "initdb")]
    else:
        initdb = [str(PG_BIN / "initdb")]
    subprocess.run(
        [*initdb, "-D", str(folder / "data"), "-A", "trust", "-U", "postgres", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    cluster = Cluster(folder, free_port())
    cluster.start()
    yield cluster
    with suppress(subprocess.CalledProcessError):
        cluster.pg_ctl("-m", "immediate", "stop")
    shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class Gunicorn:
    """A gunicorn master started by a test, with one worker by default."""

    process: subprocess.Popen
    port: int
    log: Path

    def request(self, method: str, path: str, body=None, headers=None, timeout=10) -> Answer:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return Answer(response.status, dict(response.getheaders()), response.read())
        finally:
            connection.close()

    def workers(self) -> list[int]:
        """Pids of the master's worker processes."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]

    def healthy(self) -> bool:
        try:
            return self.request("GET", "/api/health", timeout=2).status == 200
        except OSError:
            return False


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator:
    """``start(database_url, **env)`` runs gunicorn on the test's storage; killed afterwards."""
    started: list[Gunicorn] = []

    def start(database_url: str, workers: int = 1, **env: str) -> Gunicorn:
        port = free_port()
        log = tmp_path / f"gunicorn-{len(started)}.log"
        settings = {
            **os.environ,
            "DATABASE_URL": database_url,
            "MEDSCAN_STORAGE_DIR": str(tmp_path / "scans"),
            "MEDSCAN_WORK_DIR": str(tmp_path / "work"),
            **env,
        }
        command = [
            sys.executable, "-m", "gunicorn", "--workers", str(workers), "--threads", "4",
            "--worker-class", "gthread", "--bind", f"127.0.0.1:{port}", "--pythonpath",
            str(REPO), "--no-control-socket", "wsgi:app",
        ]  # fmt: skip
        with log.open("ab") as output:  # gunicorn's log and the app's, both on stderr
            process = subprocess.Popen(
                command, cwd=tmp_path, env=settings, stderr=output, start_new_session=True
            )
        server = Gunicorn(process, port, log)
        started.append(server)
        if not wait_until(server.healthy, 30):
            raise RuntimeError(f"gunicorn did not start: {log.read_text()}")
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()
