"""Analysis latency of a 300-slice 512x512 CT series, as a ZIP scan and as one single-file scan.

    PYTHONPATH=. python bench/analyze.py

Uploads both scans to medscan under gunicorn as shipped, times ``POST /api/scans/{id}/analyze``
with curl (1 warm-up, then --repeat timed calls each: p50/p90), then times in-process the two
parts of a ZIP scan's analysis that touch the disk: the ZIP extraction (``extract_archive``) and
the header reading (``read_instances``) of the 300 files (p50 of --repeat, page cache warm).
Everything it writes under --data-dir is removed at the end, with the database.
"""

from __future__ import annotations

import argparse
import shutil
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import common
import numpy as np
from common import Gunicorn, create_patient, curl, percentile, service_env

from medscan.analyzer import read_instances
from medscan.safezip import UnpackLimits, extract_archive
from medscan.workspace import work_dir
from tests.dicom_factory import write_ct_series


def make_series(folder: Path, slices: int) -> list[Path]:
    """Write the series (512x512 int16, chest-like pixels) and return its files."""
    rng = np.random.default_rng(300)
    return write_ct_series(
        folder,
        n_slices=slices,
        rows=512,
        columns=512,
        pixel_fn=lambda index, rows, columns: common.ct_pixels(index, rows, columns, rng),
    )


def zip_files(files: list[Path], target: Path) -> Path:
    """Deflate `files` into `target` under ``series/``."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in files:
            archive.write(file, f"series/{file.name}")
    return target


def series_and_zip(root: Path, slices: int) -> tuple[list[Path], Path]:
    """Write the series and its ZIP under `root` (on the repository's disk); print their sizes."""
    root.mkdir(parents=True, exist_ok=True)
    common.same_disk(root, common.REPO)
    files = make_series(root / "series", slices)
    archive = zip_files(files, root / "series.zip")
    size = sum(f.stat().st_size for f in files)
    print(f"series: {len(files)} files, {size / 2**20:.0f} MiB; "
          f"ZIP {archive.stat().st_size / 2**20:.0f} MiB")
    return files, archive


def timed(action: Callable[[], object], repeat: int) -> list[float]:
    """Wall seconds of `repeat` calls of `action`."""
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - started)
    return seconds


def summary(name: str, seconds: list[float]) -> str:
    """One line: p50, p90, min, max in milliseconds."""
    return (
        f"{name:34s} p50 {1000 * percentile(seconds, 50):8.1f} ms  "
        f"p90 {1000 * percentile(seconds, 90):8.1f} ms  "
        f"min {1000 * min(seconds):8.1f}  max {1000 * max(seconds):8.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/medscan_bench_io/analyze"))
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--port", type=int, default=8741)
    parser.add_argument("--db-name", default="medscan_bench_io")
    args = parser.parse_args()

    root: Path = args.data_dir
    try:
        files, archive = series_and_zip(root, args.slices)
        with common.database(args.db_name) as db_url:
            env = service_env(db_url, root / "svc", GUNICORN_WORKERS="2")
            with Gunicorn("wsgi:app", args.port, env, root / "svc.log") as service:
                latencies = service_latencies(service, archive, files[len(files) // 2], args.repeat)
        for name, seconds in latencies.items():
            print(summary(f"analyze via gunicorn, {name}", seconds))

        reading = timed(lambda: read_instances(files), args.repeat)
        print(summary(f"in-process read_instances({len(files)})", reading))
        extraction = timed(lambda: extract_once(archive, root / "work"), args.repeat)
        print(summary("in-process extract_archive(ZIP)", extraction))
        zip_p50 = percentile(latencies["ZIP scan"], 50)
        print(f"share of the ZIP scan's p50: header reading "
              f"{100 * percentile(reading, 50) / zip_p50:.0f}%, extraction "
              f"{100 * percentile(extraction, 50) / zip_p50:.0f}%")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def service_latencies(
    service: Gunicorn, archive: Path, one_file: Path, repeat: int
) -> dict[str, list[float]]:
    """Upload both scans, analyse each once to warm up, then `repeat` times timed."""
    patient = create_patient(service.url)
    latencies: dict[str, list[float]] = {}
    for name, path in (("ZIP scan", archive), ("single file", one_file)):
        upload = curl(
            service.url + "/api/v1/scans", "-F", f"patient_id={patient}", "-F", f"file=@{path}"
        )
        assert upload.status == 201, upload
        scan_id = upload.json()["id"]
        url = f"{service.url}/api/scans/{scan_id}/analyze"
        results = [curl(url, "-X", "POST") for _ in range(repeat + 1)]
        for result in results:
            body = result.json()
            assert result.status == 200 and body["ok"], result
        latencies[name] = [result.seconds for result in results[1:]]
        assert curl(f"{service.url}/api/v1/scans/{scan_id}", "-X", "DELETE").status == 204
    return latencies


def extract_once(archive: Path, base: Path) -> None:
    """Extract `archive` as a ZIP scan is extracted for analysis, into a removed work folder."""
    with work_dir(base) as folder:
        extract_archive(archive, folder, UnpackLimits(), nested=False)


if __name__ == "__main__":
    main()
