"""Asynchronous bulk runs: time to 202 for a 1 GB archive, and the async path's overhead.

    PYTHONPATH=. python bench/async_runs.py [--size 1000] [--repeat 3]

Builds bulk.py's realistic archive (512x512 CT studies, nested study ZIPs), starts a medscan
gunicorn (1 worker) with a queue (Redis database --redis-db, default 11) and one worker process
(``flask --app wsgi medscan worker``), then, --repeat times and interleaved on the same archive:
the synchronous ``POST`` (curl time_total, the baseline), and the asynchronous ``POST`` with
``Prefer: respond-async``: its time to 202 (curl), and its time until the run reads
``succeeded`` (polled every 0.2 s from before the POST). Prints medians and the ratios
202/synchronous and asynchronous end-to-end/synchronous.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bulk import build_archive
from common import MIB, REPO, Gunicorn, curl, database, median, service_env, spread

POLL_S = 0.2


def run_status(base: str, run_id: str) -> str:
    with urllib.request.urlopen(f"{base}/api/bulk-runs/{run_id}", timeout=30) as answer:
        return json.load(answer)["status"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1000, help="MB of archive")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/medscan_bench_async"))
    parser.add_argument("--port", type=int, default=8771)
    parser.add_argument("--redis-db", type=int, default=11)
    parser.add_argument("--db-name", default="medscan_bench_async")
    args = parser.parse_args()

    root = args.data_dir
    root.mkdir(parents=True, exist_ok=True)
    archive = root / f"bulk_{args.size}mb.zip"
    if not archive.exists():
        started = time.perf_counter()
        build_archive(args.size, archive)
        print(f"built {archive.name} in {time.perf_counter() - started:.0f} s")
    print(f"archive {archive.stat().st_size / MIB:.0f} MiB")
    broker = f"redis://127.0.0.1:6379/{args.redis_db}"
    subprocess.run(["redis-cli", "-n", str(args.redis_db), "flushdb"], check=True)
    times: dict[str, list[float]] = {"sync 201": [], "async 202": [], "async done": []}
    with database(args.db_name) as db_url:
        env = service_env(db_url, root / "svc", MEDSCAN_BROKER_URL=broker)
        worker_log = (root / "worker.log").open("ab")
        worker = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "wsgi", "medscan", "worker"],
            cwd=REPO,
            env={**os.environ, **env, "PYTHONPATH": str(REPO)},
            stdout=worker_log,
            stderr=worker_log,
        )
        try:
            with Gunicorn("wsgi:app", args.port, env, root / "svc.log") as service:
                base = service.url
                for _ in range(args.repeat):
                    result = curl(base + "/api/bulk-runs", "-F", f"file=@{archive}")
                    assert result.status == 201, result
                    times["sync 201"].append(result.seconds)
                    started = time.perf_counter()
                    result = curl(
                        base + "/api/bulk-runs",
                        "-H",
                        "Prefer: respond-async",
                        "-F",
                        f"file=@{archive}",
                    )
                    assert result.status == 202, result
                    times["async 202"].append(result.seconds)
                    run_id = result.json()["id"]
                    while (status := run_status(base, run_id)) in ("queued", "running"):
                        time.sleep(POLL_S)
                    assert status == "succeeded", status
                    times["async done"].append(time.perf_counter() - started)
        finally:
            worker.terminate()
            worker.wait(60)
            worker_log.close()
    for name, values in times.items():
        print(f"{name:11s} median {median(values):7.2f} s  "
              f"runs {' '.join(f'{v:.2f}' for v in values)}  spread {spread(values)}")
    sync = median(times["sync 201"])
    print(f"202 / synchronous {median(times['async 202']) / sync:.3f}; "
          f"async end to end / synchronous {median(times['async done']) / sync:.3f}")
    shutil.rmtree(root / "svc", ignore_errors=True)


if __name__ == "__main__":
    main()
