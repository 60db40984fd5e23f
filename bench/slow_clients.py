"""Slow clients against gunicorn as shipped: N stalled requests while a GET loop measures.

    python bench/slow_clients.py                          # this checkout, 8 stalled bodies
    python bench/slow_clients.py --repo /work/c-before    # another checkout (e.g. before a fix)
    python bench/slow_clients.py --stall headers --stalled 16 --seconds 40

Starts ``gunicorn -c gunicorn.conf.py wsgi:app`` from ``--repo`` on a throw-away SQLite
database, opens ``--stalled`` connections that each send a request and then stop sending:
``body`` sends a scan upload's headers with ``Content-Length: 1000`` and 7 body bytes,
``headers`` sends half a request line, ``unread`` sends a GET with a body that never comes,
``idle`` connects and sends nothing. Meanwhile one client alternates ``GET /api/health`` and
``GET /api/v1/patients`` for ``--seconds`` and prints their latency (p50, p95, max; a request
that gets no answer in ``--request-timeout`` seconds counts as a failure at that time), then
what each stalled connection received (a status, or nothing) and when.
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

BODY_HEAD = (
    "POST /api/v1/scans HTTP/1.1\r\n"
    "Host: bench\r\n"
    "Content-Type: multipart/form-data; boundary=b\r\n"
    "Content-Length: 1000\r\n\r\n"
    "--b\r\nCo"
)
HEADERS_HEAD = "GET /api/health HTTP/1.1\r\nHo"
# A body the view never reads: the answer comes at once, then gunicorn drains what is left.
UNREAD_HEAD = "GET /api/health HTTP/1.1\r\nHost: bench\r\nContent-Length: 1000\r\n\r\nabcdefg"
HEADS = {"body": BODY_HEAD, "headers": HEADERS_HEAD, "unread": UNREAD_HEAD, "idle": ""}
PROBE_PATHS = ("/api/health", "/api/v1/patients")


@dataclass
class Stalled:
    """One connection that sent part of a request and then nothing."""

    sock: socket.socket
    opened: float
    answer: str = "nothing"
    answered_after: float | None = None
    reader: threading.Thread | None = field(default=None, repr=False)

    def wait_for_answer(self) -> None:
        """Record the status line the server sends, if any, and when."""
        try:
            data = self.sock.recv(4096)
        except OSError as error:
            self.answer = f"error {error.__class__.__name__}"
            return
        self.answered_after = time.monotonic() - self.opened
        self.answer = data.split(b"\r\n", 1)[0].decode(errors="replace") if data else "closed"


def open_stalled(port: int, head: str) -> Stalled:
    """Connect, send ``head`` and keep the connection open without sending more."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(head.encode())
    stalled = Stalled(sock, time.monotonic())
    stalled.reader = threading.Thread(target=stalled.wait_for_answer, daemon=True)
    stalled.reader.start()
    return stalled


def probe(port: int, seconds: float, request_timeout: float) -> tuple[list[float], int]:
    """Alternate the probe GETs for ``seconds``: latencies (s) and the number of failures."""
    latencies: list[float] = []
    failures = 0
    deadline = time.monotonic() + seconds
    turn = 0
    while time.monotonic() < deadline:
        path = PROBE_PATHS[turn % len(PROBE_PATHS)]
        turn += 1
        started = time.monotonic()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=request_timeout)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            ok = response.status == 200
        except OSError:
            ok = False
        finally:
            connection.close()
        latencies.append(time.monotonic() - started)
        failures += not ok
        time.sleep(0.05)
    return latencies, failures


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(repo: Path, root: Path, port: int, extra_env: dict[str, str]):
    """gunicorn.conf.py from ``repo`` on a fresh SQLite database; returns the process."""
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{root / 'medscan.db'}",
        "MEDSCAN_STORAGE_DIR": str(root / "storage"),
        "MEDSCAN_WORK_DIR": str(root / "work"),
        "MEDSCAN_LOG_LEVEL": "WARNING",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_ACCESS_LOG": str(root / "access.log"),
        "GUNICORN_ERROR_LOG": str(root / "error.log"),
        "PYTHONPATH": str(repo),
        **extra_env,
    }
    flask = [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"]
    subprocess.run(flask, cwd=repo, env=env, check=True, capture_output=True)
    gunicorn = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
    process = subprocess.Popen(gunicorn, cwd=repo, env=env, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("gunicorn did not start")


def summary(latencies: list[float], failures: int) -> str:
    """p50 / p95 / max in milliseconds, and the count."""
    p50, p95 = np.percentile(latencies, [50, 95])
    return (
        f"{len(latencies)} GETs, {failures} failed; latency p50 {1000 * p50:.0f} ms, "
        f"p95 {1000 * p95:.0f} ms, max {1000 * max(latencies):.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--stalled", type=int, default=8, help="stalled connections (8)")
    parser.add_argument("--stall", choices=HEADS, default="body")
    parser.add_argument("--seconds", type=float, default=20, help="probe duration (20)")
    parser.add_argument("--request-timeout", type=float, default=10, help="per probe (10 s)")
    parser.add_argument(
        "--env", action="append", default=[], help="NAME=VALUE for the server, repeatable"
    )
    args = parser.parse_args()
    extra_env = dict(item.split("=", 1) for item in args.env)
    head = HEADS[args.stall]

    with tempfile.TemporaryDirectory(prefix="medscan-slow-") as tmp:
        port = free_port()
        server = start_gunicorn(args.repo.resolve(), Path(tmp), port, extra_env)
        try:
            probe(port, 1, args.request_timeout)  # warm-up: both workers load the app
            baseline = probe(port, 2, args.request_timeout)
            print(f"no stalled clients: {summary(*baseline)}")
            stalled = [open_stalled(port, head) for _ in range(args.stalled)]
            time.sleep(0.5)
            loaded = probe(port, args.seconds, args.request_timeout)
            print(f"{args.stalled} stalled ({args.stall}): {summary(*loaded)}")
            answers: dict[str, list[float]] = {}
            for one in stalled:
                after = one.answered_after
                answers.setdefault(one.answer, []).append(after if after is not None else -1)
            for answer, afters in sorted(answers.items()):
                times = ", ".join(f"{t:.1f}" for t in sorted(afters) if t >= 0)
                print(
                    f"  stalled got {answer!r}: {len(afters)}" + f" after {times} s" * bool(times)
                )
            incoming = Path(tmp, "storage", ".incoming")
            print(f"  spooled upload files at the end: {len(list(incoming.iterdir()))}")
            for one in stalled:
                one.sock.close()
            time.sleep(2)
            print(f"  2 s after closing the stalled: {len(list(incoming.iterdir()))}")
        finally:
            os.killpg(server.pid, signal.SIGKILL)  # the master and its workers, no grace
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
