"""Load test of the patients and scans API on a seeded PostgreSQL database, against a baseline.

    python bench/seed.py  postgresql://postgres@127.0.0.1/medscan_load --patients 1000000
    python bench/load.py  postgresql://postgres@127.0.0.1/medscan_load --clients 1,8,32

Starts medscan and ``bench/baseline_app.py`` under gunicorn with ``gunicorn.conf.py`` as
shipped, drives each scenario with wrk (``bench/wrk/paths.lua``) at each client count, and
prints one row per scenario and count: requests/s, p50, p95, p99, errors. The baseline answers
``GET /patients/{id}`` with one raw psycopg2 query; ``get_by_id`` is reported as its ratio.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager, nullcontext
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parent.parent
LUA = ROOT / "bench" / "wrk" / "paths.lua"
COMMON_TERMS = ("иванов", "smith", "петрова", "иван", "сергей")
WRITES_PER_SECOND = 10
MULTI_WORD = ("иван иванов", "анна смирнова", "john smith", "пётр петров")


@contextmanager
def renaming(base: str, patient_path: str, per_second: int):
    """Rename one patient ``per_second`` times a second until the block ends."""
    stop = threading.Event()

    def rename() -> None:
        for turn in itertools.count():
            if stop.wait(1 / per_second):
                return
            body = json.dumps({"first_name": f"Переименован{turn % 2}"}).encode()
            request = urllib.request.Request(
                base + patient_path, body, {"Content-Type": "application/json"}, method="PUT"
            )
            urllib.request.urlopen(request, timeout=10).close()

    writer = threading.Thread(target=rename, daemon=True)
    writer.start()
    try:
        yield
    finally:
        stop.set()
        writer.join()


@contextmanager
def gunicorn(app: str, port: int, env: dict[str, str]):
    """Run ``app`` under gunicorn.conf.py on ``port`` until the block ends."""
    environment = {**os.environ, **env, "GUNICORN_BIND": f"127.0.0.1:{port}"}
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", app],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
            except urllib.error.HTTPError:
                break  # it answers (404): up
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def patient_ids(cursor, count: int) -> list[str]:
    """About ``count`` ids of existing patients, spread over the table."""
    cursor.execute("SELECT row_count FROM table_counts WHERE table_name = 'patients'")
    (patients,) = cursor.fetchone()
    cursor.execute(
        "SELECT id FROM patients TABLESAMPLE SYSTEM (%s) LIMIT %s",
        (min(100.0, 200.0 * count / max(patients, 1)), count),
    )
    return [str(row[0]) for row in cursor.fetchall()]


def delete_paths(url: str, count: int) -> list[str]:
    """Fresh ids for a DELETE run (each run deletes the patients it is given)."""
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        return [f"/api/v1/patients/{i}" for i in patient_ids(cursor, count)]


def sample(url: str, count: int, seed: int) -> dict[str, list[str]]:
    """Request paths for every scenario, drawn from the database."""
    rng = random.Random(seed)
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT row_count FROM table_counts WHERE table_name = 'patients'")
        (patients,) = cursor.fetchone()
        ids = patient_ids(cursor, 2 * count)
        cursor.execute(
            "SELECT DISTINCT split_part(search_name, ' ', 2) FROM patients "
            "WHERE search_name ~ '[0-9]' LIMIT %s",
            (count,),
        )
        rare = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT DISTINCT patient_id FROM scans LIMIT %s", (count,))
        with_scans = [str(row[0]) for row in cursor.fetchall()]
    rng.shuffle(ids)
    half = len(ids) // 2
    quote = urllib.parse.quote
    return {
        "get_by_id": [f"/api/v1/patients/{i}" for i in ids[:half]],
        "baseline_get_by_id": [f"/patients/{i}" for i in ids[:half]],
        "list": ["/api/v1/patients?limit=20"],
        "list_deep_offset": [
            f"/api/v1/patients?limit=20&offset={rng.randrange(patients // 2, patients - 20)}"
            for _ in range(count)
        ],
        "search_rare": [f"/api/v1/patients?q={quote(term)}" for term in rare],
        "search_common": [f"/api/v1/patients?q={quote(term)}" for term in COMMON_TERMS],
        # The same searches while another client renames a patient WRITES_PER_SECOND times a
        # second: every rename redraws the table's version, so remembered totals keep expiring.
        "search_common_while_writing": [
            f"/api/v1/patients?q={quote(term)}" for term in COMMON_TERMS
        ],
        "search_multi_word": [f"/api/v1/patients?q={quote(term)}" for term in MULTI_WORD],
        "search_2_chars": [f"/api/v1/patients?q={quote(term)}" for term in ("ив", "ов", "sm")],
        "scans_of_patient": [f"/api/v1/scans?patient_id={i}" for i in with_scans],
        "create": ["/api/v1/patients"],
        "update": [f"/api/v1/patients/{i}" for i in ids[half:]],
        "delete": ["(fresh ids per run)"],
    }


BODIES = {
    "create": ("POST", '{"first_name": "Нагрузка", "last_name": "Тестова"}'),
    "update": ("PUT", '{"description": "updated by bench/load.py"}'),
    "delete": ("DELETE", None),
}


def wrk(base: str, paths: list[str], clients: int, seconds: int, method: str, body: str | None):
    """One wrk run; returns its JSON summary."""
    threads = min(clients, 2)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        # Each thread takes its own slice of the file; a list shorter than that is repeated.
        handle.write("\n".join(paths if len(paths) >= threads else paths * threads) + "\n")
    args = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(clients),
        "-d",
        f"{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        base,
        "--",
        method,
        handle.name,
        str(threads),
    ]
    if body:
        args.append(body)
    output = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    os.unlink(handle.name)
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database_url", help="seeded PostgreSQL database (libpq URL)")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--scenarios", default="", help="comma-separated subset")
    parser.add_argument("--sample", type=int, default=20_000)
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat every cell, interleaved, this many times"
    )
    args = parser.parse_args()
    paths = sample(args.database_url, args.sample, seed=7)
    wanted = [s for s in args.scenarios.split(",") if s] or [s for s in paths if paths[s]]
    env = {
        "DATABASE_URL": args.database_url,
        "MEDSCAN_LOG_LEVEL": "WARNING",
        "BASELINE_DATABASE_URL": args.database_url,
        "MEDSCAN_STORAGE_DIR": "/tmp/bench-load",
        "MEDSCAN_WORK_DIR": "/tmp/bench-load/work",
    }
    results = []
    with (
        gunicorn("wsgi:app", 8101, env) as medscan,
        gunicorn("bench.baseline_app:app", 8102, env) as baseline,
    ):
        for clients, turn, scenario in itertools.product(
            [int(c) for c in args.clients.split(",")], range(args.rounds), wanted
        ):
            base = baseline if scenario.startswith("baseline") else medscan
            method, body = BODIES.get(scenario, ("GET", None))
            targets = (
                delete_paths(args.database_url, args.sample)
                if scenario == "delete"
                else paths[scenario]
            )
            writes = (
                renaming(medscan, paths["update"][0], WRITES_PER_SECOND)
                if scenario.endswith("while_writing")
                else nullcontext()
            )
            with writes:
                summary = wrk(base, targets, clients, args.seconds, method, body)
            results.append({"scenario": scenario, "clients": clients, "round": turn, **summary})
            print(json.dumps(results[-1]), flush=True)
    print("\n| scenario | clients | round | req/s | p50 ms | p95 ms | p99 ms | errors | non-2xx |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['scenario']} | {r['clients']} | {r['round']} | {r['rps']:.0f} | "
            f"{r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | "
            f"{r['non2xx']} |"
        )
    for clients, turn in sorted({(r["clients"], r["round"]) for r in results}):
        by = {r["scenario"]: r for r in results if (r["clients"], r["round"]) == (clients, turn)}
        if "get_by_id" in by and "baseline_get_by_id" in by:
            ratio = by["get_by_id"]["rps"] / by["baseline_get_by_id"]["rps"]
            print(
                f"get_by_id throughput / baseline at {clients} clients, round {turn}: {ratio:.2f}"
            )


if __name__ == "__main__":
    main()
