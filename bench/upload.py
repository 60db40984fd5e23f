"""Scan upload: worker memory and throughput of a ~2 GB DICOM upload, and a chunked 413.

    PYTHONPATH=. python bench/upload.py

Writes a multi-frame 512x512 int16 CT file (header by pydicom, pixel data streamed), starts
medscan under gunicorn as shipped (1 worker) and a bare WSGI app that only drains the body
(same gunicorn settings), posts the file to each in turn with curl, and prints the worker's
VmHWM/VmRSS around the first medscan upload, the medians of curl's time_total and their ratio,
with ``dd conv=fsync`` of the same file on the same disk as the disk's floor.
Everything it writes under --data-dir is removed at the end, with the database.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import struct
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import common
import numpy as np
from common import MIB, Gunicorn, create_patient, curl, median, proc_status, service_env, spread
from pydicom.filewriter import dcmwrite

from tests.dicom_factory import ct_dataset


class BareApp:
    """WSGI app that reads the request body in 1 MiB chunks and discards it.

    ``config`` is what gunicorn.conf.py's ``post_worker_init`` reads of the app (its API-keys
    warning), so the bare app runs under the very same settings as medscan.
    """

    config = {"MEDSCAN_API_KEYS": ("bench",)}

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        stream = environ["wsgi.input"]
        received = 0
        while chunk := stream.read(MIB):
            received += len(chunk)
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"received": received}).encode()]


bare_app = BareApp()


def write_big_dicom(path: Path, frames: int, rows: int = 512, columns: int = 512) -> int:
    """Write a Part 10 multi-frame CT of `frames` frames without holding it; return its size."""
    rng = np.random.default_rng(0)
    pool = [common.ct_pixels(i, rows, columns, rng).tobytes() for i in range(16)]
    ds = ct_dataset(rows=rows, columns=columns, pixels=np.zeros((rows, columns), np.int16))
    del ds.PixelData
    ds.NumberOfFrames = frames
    header = io.BytesIO()
    dcmwrite(header, ds, enforce_file_format=True)
    length = frames * rows * columns * 2
    with path.open("wb") as out:
        out.write(header.getvalue())
        out.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, length))
        for frame in range(frames):
            out.write(pool[frame % len(pool)])
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/medscan_bench_io/upload"))
    parser.add_argument("--frames", type=int, default=4000, help="512x512 int16 frames")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--port", type=int, default=8731, help="medscan; +1 bare, +2 small limit")
    parser.add_argument("--db-name", default="medscan_bench_io")
    args = parser.parse_args()

    root: Path = args.data_dir
    root.mkdir(parents=True, exist_ok=True)
    common.same_disk(root, common.REPO)
    try:
        big = root / "big.dcm"
        size = write_big_dicom(big, args.frames)
        print(f"file: {big} {size / MIB:.0f} MiB ({args.frames} frames 512x512 int16)")
        with common.database(args.db_name) as db_url:
            measure(root, big, size, db_url, args.port, args.repeat)
            check_chunked_413(root, big, db_url, args.port + 2)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def measure(root: Path, big: Path, size: int, db_url: str, port: int, repeat: int) -> None:
    """Interleave medscan and bare uploads; print memory, throughput and the ratio."""
    medscan = Gunicorn("wsgi:app", port, service_env(db_url, root / "svc"), root / "svc.log")
    bare = Gunicorn(
        "upload:bare_app",
        port + 1,
        {"GUNICORN_WORKERS": "1"},
        root / "bare.log",
        extra_args=("--pythonpath", str(common.REPO / "bench")),
    )
    with medscan, bare:
        patient = create_patient(medscan.url)
        worker = medscan.worker_pid()
        before = proc_status(worker)
        times: dict[str, list[float]] = {"medscan": [], "bare": [], "dd": []}
        for attempt in range(repeat):
            result = curl(
                medscan.url + "/api/v1/scans", "-F", f"patient_id={patient}", "-F", f"file=@{big}"
            )
            if result.status != 201:
                raise RuntimeError(f"medscan upload: {result.status} {result.body[:200]!r}")
            if attempt == 0:
                after = proc_status(worker)
            times["medscan"].append(result.seconds)
            scan_id = result.json()["id"]
            deleted = curl(f"{medscan.url}/api/v1/scans/{scan_id}", "-X", "DELETE")
            assert deleted.status == 204, deleted
            result = curl(bare.url + "/", "-F", f"file=@{big}")
            assert result.status == 200 and result.json()["received"] > size, result
            times["bare"].append(result.seconds)
            times["dd"].append(disk_copy(big, root / "copy.dcm"))
        last = proc_status(worker)
        stored = [p for p in (root / "svc" / "storage").rglob("*") if p.is_file()]
        assert not stored, f"files left in storage: {stored}"

    print(
        f"worker {worker} before upload 1: VmHWM {before['VmHWM'] / 1024:.1f} MiB, "
        f"VmRSS {before['VmRSS'] / 1024:.1f} MiB"
    )
    print(
        f"after upload 1:  VmHWM {after['VmHWM'] / 1024:.1f} MiB, "
        f"VmRSS {after['VmRSS'] / 1024:.1f} MiB"
    )
    print(
        f"peak increase: {(after['VmHWM'] - before['VmHWM']) / 1024:.1f} MiB "
        f"(after {repeat} uploads: VmHWM {last['VmHWM'] / 1024:.1f} MiB)"
    )
    mb = size / MIB
    for name, values in times.items():
        print(
            f"{name:8s} time_total median {median(values):.2f} s, {mb / median(values):.0f} MiB/s"
            f"  runs {' '.join(f'{v:.2f}' for v in values)}  spread {spread(values)}"
        )
    for floor in ("bare", "dd"):
        ratio = median(times["medscan"]) / median(times[floor])
        print(f"ratio medscan/{floor} (time_total): {ratio:.2f}")


def disk_copy(source: Path, target: Path) -> float:
    """Seconds of ``dd bs=1M conv=fsync`` copying `source` to `target` (then removed)."""
    started = time.perf_counter()
    common.run(["dd", f"if={source}", f"of={target}", "bs=1M", "conv=fsync", "status=none"])
    seconds = time.perf_counter() - started
    target.unlink()
    return seconds


def check_chunked_413(root: Path, big: Path, db_url: str, port: int) -> None:
    """A chunked upload over MEDSCAN_MAX_SCAN_MB=1 answers 413 JSON and leaves no file."""
    piece = root / "eight_mib.dcm"
    with big.open("rb") as source, piece.open("wb") as out:
        out.write(source.read(8 * MIB))
    env = service_env(db_url, root / "small", MEDSCAN_MAX_SCAN_MB="1")
    with Gunicorn("wsgi:app", port, env, root / "small.log") as small:
        patient = create_patient(small.url)
        result = curl(
            small.url + "/api/v1/scans",
            "-H",
            "Transfer-Encoding: chunked",
            "-F",
            f"patient_id={patient}",
            "-F",
            f"file=@{piece}",
        )
    leftovers = [p for p in (root / "small" / "storage").rglob("*") if p.is_file()]
    print(
        f"chunked 8 MiB over a 1 MB limit: {result.status} {result.body.decode()!r}; "
        f"files left: {len(leftovers)}"
    )
    assert result.status == 413 and result.json() == {"error": "File too large. Max 1 MB"}
    assert not leftovers


if __name__ == "__main__":
    main()
