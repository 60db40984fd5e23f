"""Preview latency (``GET /api/scans/{id}/preview.png``) of a single-file scan and of a ZIP scan
of a 300-slice 512x512 series, and the worker's RSS growth while the ZIP scan is previewed.

    PYTHONPATH=. python bench/preview.py

Runs medscan under gunicorn as shipped with one worker, times each call with curl, and reads
the worker's VmRSS/VmHWM from /proc. Baselines measured in the same run: ``GET
/api/v1/scans/{id}`` (a metadata read through the same stack) for the warm previews, and
``POST /api/scans/{id}/analyze`` of the same ZIP scan (which unpacks and decodes the whole
series) for the first, cold preview. "Cold" is the first preview of a freshly uploaded copy
(its series listing not yet in the worker's memory); "warm" are the next ones, each at another
index. Everything it writes under --data-dir is removed at the end, with the database.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import common
from analyze import series_and_zip
from common import Gunicorn, create_patient, curl, percentile, proc_status, service_env


def upload(base: str, patient: str, path: Path) -> str:
    """Upload `path` as a scan and return its id."""
    result = curl(base + "/api/v1/scans", "-F", f"patient_id={patient}", "-F", f"file=@{path}")
    assert result.status == 201, result
    return result.json()["id"]


def preview(base: str, scan: str, index: int | None = None) -> float:
    """Seconds of one preview call (checked to be a PNG)."""
    query = "" if index is None else f"?index={index}"
    result = curl(f"{base}/api/scans/{scan}/preview.png{query}")
    assert result.status == 200 and result.body.startswith(b"\x89PNG"), result.status
    return result.seconds


def line(name: str, seconds: list[float], baseline: float | None = None) -> str:
    """p50 and p95 in ms, and the p50 as a multiple of `baseline` seconds."""
    p50 = percentile(seconds, 50)
    text = (
        f"{name:44s} n={len(seconds):3d}  p50 {1000 * p50:8.1f} ms  "
        f"p95 {1000 * percentile(seconds, 95):8.1f} ms"
    )
    return text + (f"  ({p50 / baseline:.1f}x baseline)" if baseline else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/medscan_bench_io/preview"))
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=40, help="warm calls per scan")
    parser.add_argument("--cold", type=int, default=5, help="ZIP scan copies (cold calls)")
    parser.add_argument("--port", type=int, default=8781)
    parser.add_argument("--db-name", default="medscan_bench_preview")
    args = parser.parse_args()

    root: Path = args.data_dir
    try:
        files, archive = series_and_zip(root, args.slices)
        with common.database(args.db_name) as db_url:
            env = service_env(db_url, root / "svc")
            with Gunicorn("wsgi:app", args.port, env, root / "svc.log") as service:
                measure(service, archive, files[len(files) // 2], args)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def measure(service: Gunicorn, archive: Path, single: Path, args: argparse.Namespace) -> None:
    """Upload, preview, print."""
    base = service.url
    patient = create_patient(base)
    one = upload(base, patient, single)
    zips = [upload(base, patient, archive) for _ in range(args.cold)]
    metadata = [curl(f"{base}/api/v1/scans/{one}").seconds for _ in range(args.repeat)]
    baseline = percentile(metadata, 50)
    print(line("baseline GET /api/v1/scans/{id}", metadata))

    single_cold = preview(base, one)
    single_warm = [preview(base, one) for _ in range(args.repeat)]
    print(line("single file, first preview", [single_cold], baseline))
    print(line("single file, next previews", single_warm, baseline))

    worker = service.worker_pid()
    before = proc_status(worker)
    zip_cold = [preview(base, scan) for scan in zips]
    cold = proc_status(worker)
    indexes = [round(k * (args.slices - 1) / (args.repeat - 1)) for k in range(args.repeat)]
    zip_warm = [preview(base, zips[0], index) for index in indexes]
    warm = proc_status(worker)
    analyze = curl(f"{base}/api/scans/{zips[0]}/analyze", "-X", "POST")
    assert analyze.status == 200 and analyze.json()["ok"], analyze
    print(line("ZIP scan, first preview (cold)", zip_cold, analyze.seconds))
    print(line("ZIP scan, next previews (warm, spread indexes)", zip_warm, baseline))
    print(f"{'ZIP scan, POST analyze (cold baseline)':44s}        {1000 * analyze.seconds:8.1f} ms")
    mib = 1024
    volume = args.slices * 512 * 512 * 4 / 2**20
    print(
        f"worker VmRSS: {before['VmRSS'] / mib:.0f} MiB before the ZIP previews; "
        f"{cold['VmRSS'] / mib:.0f} MiB after {len(zip_cold)} cold ones "
        f"(+{(cold['VmRSS'] - before['VmRSS']) / mib:.0f} MiB, {len(zip_cold)} listings kept); "
        f"{warm['VmRSS'] / mib:.0f} MiB after {len(zip_warm)} warm ones "
        f"(+{(warm['VmRSS'] - cold['VmRSS']) / mib:.0f} MiB); VmHWM {warm['VmHWM'] / mib:.0f} MiB "
        f"(+{(warm['VmHWM'] - before['VmRSS']) / mib:.0f} MiB). The series' HU volume, as a "
        f"model gets it, is {volume:.0f} MiB."
    )


if __name__ == "__main__":
    main()
