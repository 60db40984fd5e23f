"""Instructions per request, counted by callgrind: a repeatable twin of load.py's timings.

    python bench/instructions.py postgresql://postgres@127.0.0.1/medscan_load

Each target runs in-process (the WSGI app called directly, no gunicorn, no socket) under
``valgrind --tool=callgrind`` twice: warm-up requests only, then the same plus ``--requests``
more. The difference divided by ``--requests`` is the app's own cost per request in CPU
instructions. It does not count PostgreSQL's work, and it does not move with the machine's load.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WARM_UP = 30
TARGETS = ("baseline_get_by_id", "get_by_id", "list", "search_rare", "search_common")


def environs(target: str, url: str) -> list[dict]:
    """WSGI environs of ``target``'s requests, drawn from the database."""
    import psycopg2
    from werkzeug.test import EnvironBuilder

    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT id FROM patients ORDER BY id LIMIT 100")
        ids = [str(row[0]) for row in cursor.fetchall()]
        cursor.execute(
            "SELECT DISTINCT split_part(search_name, ' ', 2) FROM patients "
            "WHERE search_name ~ '[0-9]' LIMIT 100"
        )
        rare = [row[0] for row in cursor.fetchall()]
    paths = {
        "baseline_get_by_id": [f"/patients/{i}" for i in ids],
        "get_by_id": [f"/api/v1/patients/{i}" for i in ids],
        "list": ["/api/v1/patients?limit=20"],
        "search_rare": [f"/api/v1/patients?q={urllib.parse.quote(t)}" for t in rare],
        "search_common": [f"/api/v1/patients?q={urllib.parse.quote('иван')}"],
    }[target]
    return [EnvironBuilder(path=path).get_environ() for path in paths]


def child(target: str, url: str, requests: int) -> None:
    """Serve ``WARM_UP + requests`` requests of ``target`` in this process."""
    os.environ.update(DATABASE_URL=url, BASELINE_DATABASE_URL=url, MEDSCAN_LOG_LEVEL="ERROR")
    sys.path.insert(0, str(ROOT))
    if target.startswith("baseline"):
        from bench.baseline_app import app
    else:
        from wsgi import app
    prepared = environs(target, url)
    statuses: list[str] = []
    for turn in range(WARM_UP + requests):
        body = app(dict(prepared[turn % len(prepared)]), lambda s, h, e=None: statuses.append(s))
        b"".join(body)
        body.close()
        assert statuses[-1].startswith("200"), statuses[-1]


def collected(target: str, url: str, requests: int) -> int:
    """Instructions callgrind counts for a child serving ``requests`` after the warm-up."""
    result = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            url,
            "--child",
            target,
            "--requests",
            str(requests),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(re.search(r"Collected : (\d+)", result.stderr).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database_url", help="seeded PostgreSQL database (libpq URL)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.database_url, args.requests)
        return
    print("| target | instructions per request |\n|---|---|")
    for target in args.targets.split(","):
        base = collected(target, args.database_url, 0)
        more = collected(target, args.database_url, args.requests)
        print(f"| {target} | {(more - base) / args.requests / 1e6:.2f} M |", flush=True)


if __name__ == "__main__":
    main()
