"""Real Celery workers on a real Redis, started by the tests (``flask --app wsgi medscan worker``).

The broker is Redis database ``MEDSCAN_TEST_BROKER_URL`` (default ``redis://127.0.0.1:6379/10``),
emptied before each test: give each parallel test run a database number of its own. Two workers
serve every test of a module (a worker takes seconds to start); a test that kills a worker
starts its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.queue import gated_model
from tests.tools import need

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/10"
GATED_MODEL = "tests.queue.gated_model:GatedModel"
# Short enough that a lost run is failed within seconds, not minutes.
FAST_HEARTBEAT = {"MEDSCAN_RUN_HEARTBEAT_S": 1, "MEDSCAN_RUN_LOST_S": 3}
WAIT_S = 60


@pytest.fixture(scope="session")
def broker_url() -> str:
    """The tests' Redis database; skips (fails in CI) when Redis is not running."""
    url = os.environ.get("MEDSCAN_TEST_BROKER_URL") or DEFAULT_BROKER_URL
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError:
        need(False, f"Redis at {url}")
    return url


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The folders the API and the workers share: queued runs, the gated model's files."""
    base = tmp_path_factory.mktemp("queue")
    folders = {"runs": base / "runs", "gate": base / "gate"}
    for folder in folders.values():
        folder.mkdir()
    return folders


@pytest.fixture
def gate(shared: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The gated model's folder, reset; opened afterwards so no worker stays held."""
    monkeypatch.setenv("GATED_MODEL_DIR", str(shared["gate"]))
    gated_model.reset()
    yield shared["gate"]
    gated_model.open_gate()


@pytest.fixture
def app_config(broker_url: str, shared: dict[str, Path], gate: Path) -> dict:
    """An API with the queue and the gated model (never loaded by it for asynchronous runs)."""
    redis.Redis.from_url(broker_url).flushdb()
    return {
        "MEDSCAN_BROKER_URL": broker_url,
        "MEDSCAN_MODEL": GATED_MODEL,
        "MEDSCAN_RUNS_DIR": str(shared["runs"]),
        **FAST_HEARTBEAT,
    }


class Worker:
    """One worker process (its own process group), its log kept for failure messages."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self.read_log, daemon=True).start()

    def read_log(self) -> None:
        """Keep the log (the pipe must never fill) and notice when Celery is ready."""
        for line in self.process.stderr:
            self.lines.append(line)
            if " ready." in line:
                self.ready.set()

    def wait_ready(self) -> None:
        """Until Celery says it is ready to take tasks."""
        deadline = time.monotonic() + WAIT_S
        while not self.ready.wait(0.1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("worker did not start:\n" + "".join(self.lines))

    def kill(self) -> None:
        """``kill -9`` of the worker process, as a crash or the OOM killer would."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        """A warm shutdown (SIGTERM), then SIGKILL if it takes too long."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="module")
def start_worker(
    broker_url: str, database_url: str, shared: dict[str, Path], tmp_path_factory
) -> Iterator[Callable[[], Worker]]:
    """``start_worker()``: a worker process on the test database, broker and shared folders."""
    workers: list[Worker] = []

    def start() -> Worker:
        number = len(workers) + 1
        own = tmp_path_factory.mktemp(f"worker{number}")
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "GATED_MODEL_DIR": str(shared["gate"]),
            "DATABASE_URL": database_url,
            "MEDSCAN_BROKER_URL": broker_url,
            "MEDSCAN_MODEL": GATED_MODEL,
            "MEDSCAN_RUNS_DIR": str(shared["runs"]),
            "MEDSCAN_WORK_DIR": str(own / "work"),
            "MEDSCAN_STORAGE_DIR": str(own / "scans"),
            **{name: str(value) for name, value in FAST_HEARTBEAT.items()},
        }
        command = [
            *(sys.executable, "-m", "flask", "--app", "wsgi", "medscan", "worker"),
            f"--hostname=test{number}-{os.getpid()}@%h",
        ]
        worker = Worker(command, env)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture(scope="module")
def workers(start_worker) -> list[Worker]:
    """Two workers for the module's tests, started together."""
    pool = [start_worker(), start_worker()]
    for worker in pool:
        worker.wait_ready()
    return pool


def wait_for(condition: Callable[[], object], what: str, workers: list[Worker] = ()) -> object:
    """Poll ``condition`` until it is true (a deadline, not a timed assertion)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    logs = "".join(line for worker in workers for line in worker.lines)
    pytest.fail(f"timed out waiting for {what}\n{logs}")
