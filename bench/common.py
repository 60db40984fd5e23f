"""Shared helpers of the benchmarks: CT pixels, a throw-away database, gunicorn, curl, /proc.

Importing this module puts the repository root on ``sys.path`` so that ``medscan`` and
``tests.dicom_factory`` import without installing anything.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PG = ["-h", "127.0.0.1", "-U", "postgres"]
MIB = 2**20


@cache
def _grid(rows: int, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres as fractions of the image size, origin at the centre."""
    yy, xx = np.mgrid[0:rows, 0:columns].astype(np.float32)
    return (yy - rows / 2) / rows, (xx - columns / 2) / columns


def ct_pixels(index: int, rows: int, columns: int, rng: np.random.Generator) -> np.ndarray:
    """A chest-like axial slice as stored int16 (HU + 1024, for RescaleIntercept -1024).

    Air at -1000 HU inside the scan circle, a soft-tissue ellipse at 40 HU with two lungs at
    -850 HU and a spine at 700 HU, Gaussian noise (12-60 HU) everywhere inside the circle,
    -1024 HU padding outside. Deflate packs it about 2.3:1, like real CT.
    """
    yy, xx = _grid(rows, columns)
    scale = 1 + 0.05 * np.sin(index / 40)
    hu = np.full((rows, columns), -1000, np.float32)
    sigma = np.full((rows, columns), 12, np.float32)
    body = (xx / (0.42 * scale)) ** 2 + ((yy - 0.03) / (0.30 * scale)) ** 2 <= 1
    hu[body], sigma[body] = 40, 40
    for centre in (-0.17, 0.17):
        lung = ((xx - centre) / 0.12) ** 2 + (yy / (0.19 * scale)) ** 2 <= 1
        hu[lung], sigma[lung] = -850, 35
    spine = (xx / 0.04) ** 2 + ((yy - 0.2) / 0.04) ** 2 <= 1
    hu[spine], sigma[spine] = 700, 60
    image = hu + rng.standard_normal((rows, columns), dtype=np.float32) * sigma
    image[xx**2 + yy**2 > 0.48**2] = -1024
    return np.clip(np.rint(image) + 1024, 0, 4095).astype("<i2")


def median(values: Sequence[float]) -> float:
    """The median."""
    return statistics.median(values)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (linear interpolation)."""
    return float(np.percentile(values, q))


def spread(values: Sequence[float]) -> str:
    """``min-max`` and the half range relative to the median, as noise."""
    mid = median(values)
    half = (max(values) - min(values)) / 2
    return f"{min(values):.3f}-{max(values):.3f} (±{100 * half / mid:.0f}%)"


def run(cmd: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a command, fail loudly."""
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kwargs)  # type: ignore[call-overload]


@contextmanager
def database(name: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database at 127.0.0.1, dropped afterwards; yields its URL."""
    run(["dropdb", *PG, "--if-exists", name])
    run(["createdb", *PG, name])
    url = f"postgresql://postgres@127.0.0.1/{name}"
    try:
        env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(REPO)}
        run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"], cwd=REPO, env=env)
        yield url
    finally:
        run(["dropdb", *PG, "--if-exists", "--force", name])


def proc_status(pid: int) -> dict[str, int]:
    """VmHWM and VmRSS of a process, in KiB."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            fields[key] = int(value.split()[0])
    return fields


@dataclass
class Gunicorn:
    """``gunicorn -c gunicorn.conf.py APP`` from the repository root, as shipped."""

    app: str
    port: int
    env: dict[str, str]
    log: Path
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_path: str = "/") -> None:
        """Start it and wait until ``ready_path`` answers (any status)."""
        env = {
            **os.environ,
            **self.env,
            "GUNICORN_BIND": f"127.0.0.1:{self.port}",
            "PYTHONPATH": str(REPO),
        }
        cmd = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", *self.extra_args]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [*cmd, self.app], cwd=REPO, env=env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited, see {self.log}")
            try:
                urllib.request.urlopen(self.url + ready_path, timeout=2).close()
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer on {self.url}")

    def worker_pid(self) -> int:
        """The pid of the only worker (GUNICORN_WORKERS=1)."""
        assert self.process is not None
        task = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        children = task.read_text().split()
        if len(children) != 1:
            raise RuntimeError(f"expected one worker, found {children}")
        return int(children[0])

    def stop(self) -> None:
        """SIGTERM the master and wait for it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=150)
        self.process = None

    def __enter__(self) -> Gunicorn:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class CurlResult:
    """HTTP status, curl's time_total in seconds, bytes sent and the response body."""

    status: int
    seconds: float
    uploaded: int
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def curl(url: str, *args: str) -> CurlResult:
    """Run ``curl -sS ARGS URL`` and return what it measured."""
    proc = subprocess.run(
        ["curl", "-sS", "-o", "-", "-w", "\n%{http_code} %{time_total} %{size_upload}", *args, url],
        capture_output=True,
        check=False,
    )
    body, _, tail = proc.stdout.rpartition(b"\n")
    status, seconds, uploaded = tail.split()
    return CurlResult(int(status), float(seconds), int(float(uploaded)), body)


def create_patient(base_url: str) -> str:
    """Create a patient through the API and return its id."""
    body = json.dumps({"first_name": "Bench", "last_name": "Mark"})
    result = curl(
        base_url + "/api/v1/patients", "-H", "Content-Type: application/json", "-d", body
    )
    if result.status != 201:
        raise RuntimeError(f"patient creation: {result.status} {result.body!r}")
    return result.json()["id"]


def service_env(db_url: str, root: Path, **extra: str) -> dict[str, str]:
    """Settings of a medscan instance whose files live under ``root``."""
    return {
        "DATABASE_URL": db_url,
        "MEDSCAN_STORAGE_DIR": str(root / "storage"),
        "MEDSCAN_WORK_DIR": str(root / "work"),
        "GUNICORN_WORKERS": "1",
        **extra,
    }


def same_disk(*paths: Path) -> None:
    """Fail unless every path is on one filesystem (st_dev)."""
    devices = {os.stat(path).st_dev for path in paths}
    if len(devices) != 1:
        raise SystemExit(f"{paths} are not on one filesystem")
