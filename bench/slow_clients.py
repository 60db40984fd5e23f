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
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.server.gunicorn import (  # noqa: E402
    free_port,
    kill_gunicorn,
    server_env,
    start_gunicorn,
    wait_until_listening,
)

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


def start_server(repo: Path, root: Path, port: int, extra_env: dict[str, str]):
    """gunicorn.conf.py from ``repo`` on a fresh SQLite database; returns the process."""
    env = server_env(
        root, port, f"sqlite:///{root / 'medscan.db'}", PYTHONPATH=str(repo), **extra_env
    )
    flask = [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"]
    subprocess.run(flask, cwd=repo, env=env, check=True, capture_output=True)
    process = start_gunicorn(repo, env)
    wait_until_listening(process, port)
    return process


def summary(latencies: list[float], failures: int) -> str:
    """p50 / p95 / max in milliseconds, and the count."""
    p50, p95 = np.percentile(latencies, [50, 95])
    return (
        f"{len(latencies)} GETs, {failures} failed; latency p50 {1000 * p50:.0f} ms, "
        f"p95 {1000 * p95:.0f} ms, max {1000 * max(latencies):.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=REPO)
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
        server = start_server(args.repo.resolve(), Path(tmp), port, extra_env)
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
            incoming = Path(tmp, "scans", ".incoming")
            print(f"  spooled upload files at the end: {len(list(incoming.iterdir()))}")
            for one in stalled:
                one.sock.close()
            time.sleep(2)
            print(f"  2 s after closing the stalled: {len(list(incoming.iterdir()))}")
        finally:
            kill_gunicorn(server)


if __name__ == "__main__":
    main()
