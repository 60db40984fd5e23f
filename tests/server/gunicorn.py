"""Start and stop a real gunicorn (``gunicorn.conf.py`` as shipped): for tests and bench/."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(root: Path, port: int, database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a medscan gunicorn whose files and logs live under ``root``."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "MEDSCAN_STORAGE_DIR": str(root / "scans"),
        "MEDSCAN_WORK_DIR": str(root / "work"),
        "MEDSCAN_LOG_LEVEL": "WARNING",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_ACCESS_LOG": str(root / "access.log"),
        "GUNICORN_ERROR_LOG": str(root / "error.log"),
        **extra,
    }


def start_gunicorn(repo: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``gunicorn -c gunicorn.conf.py wsgi:app`` in ``repo``, in a process group of its own."""
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
    return subprocess.Popen(command, cwd=repo, env=env, start_new_session=True)


def kill_gunicorn(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the master and its workers (stalled requests get no graceful wait)."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def wait_until_listening(process: subprocess.Popen[bytes], port: int, seconds: float = 30) -> None:
    """Return once ``port`` accepts connections; fail if gunicorn exits or takes too long."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError as error:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not start") from error
            time.sleep(0.2)
