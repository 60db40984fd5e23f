"""EXPLAIN ANALYZE of every statement the patients and scans endpoints run, on a seeded database.

    python bench/explain.py postgresql://postgres@127.0.0.1/medscan_load

The statements are the application's own (``PATIENT_BY_ID``, the ``PageQuery`` objects), with
values drawn from the database. Each runs three times on one connection; the plan and timings
printed are those of the last run (warm cache, warm catalog).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cases(cursor) -> list[tuple[str, object, dict]]:
    """(name, statement, parameters) for every read the endpoints make."""
    from medscan.patients.routes import ALL_PATIENTS, PATIENT_BY_ID
    from medscan.patients.search import contains_pattern, name_search
    from medscan.scans.routes import ALL_SCANS, SCAN_BY_ID, SCANS_OF_PATIENT

    cursor.execute("SELECT id FROM patients ORDER BY created_at LIMIT 1")
    (patient,) = cursor.fetchone()
    cursor.execute("SELECT id, patient_id FROM scans ORDER BY created_at LIMIT 1")
    scan, scan_patient = cursor.fetchone()
    cursor.execute(
        "SELECT split_part(search_name, ' ', 2) FROM patients WHERE search_name ~ '[0-9]' LIMIT 1"
    )
    (rare,) = cursor.fetchone()
    page = {"limit": 20, "offset": 0}
    deep = {"limit": 20, "offset": 500_000}

    def words(*terms: str) -> dict:
        return {f"word{i}": contains_pattern(term) for i, term in enumerate(terms)}

    one, two = name_search(1), name_search(2)
    return [
        ("patient by id", PATIENT_BY_ID, {"id": patient}),
        ("patients, first page + total", ALL_PATIENTS.rows, page),
        ("patients, offset 500,000", ALL_PATIENTS.rows, deep),
        (f"search {rare!r}: page + count (first time)", one.rows, {**page, **words(rare)}),
        ("search 'иванов': page + count (first time)", one.rows, {**page, **words("иванов")}),
        ("search 'иванов': page (total remembered)", one.page, {**page, **words("иванов")}),
        ("search 'иванов': count (total stale)", one.total, words("иванов")),
        ("search 'иван иванов': page + count", two.rows, {**page, **words("иван", "иванов")}),
        ("search 'иван иванов': page (remembered)", two.page, {**page, **words("иван", "иванов")}),
        ("search 'ив' (2 characters): page + count", one.rows, {**page, **words("ив")}),
        ("search 'ив' (2 characters): page (remembered)", one.page, {**page, **words("ив")}),
        ("scan by id", SCAN_BY_ID, {"id": scan}),
        ("scans, first page + total", ALL_SCANS.rows, page),
        ("scans of a patient + total", SCANS_OF_PATIENT.rows, {**page, "patient_id": scan_patient}),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database_url", help="seeded PostgreSQL database (libpq URL)")
    args = parser.parse_args()
    os.environ.update(DATABASE_URL=args.database_url, MEDSCAN_LOG_LEVEL="ERROR")
    sys.path.insert(0, str(ROOT))
    import psycopg2
    from sqlalchemy.dialects import postgresql

    dialect = postgresql.psycopg2.dialect()
    with psycopg2.connect(args.database_url) as connection, connection.cursor() as cursor:
        connection.autocommit = True
        for name, statement, params in cases(cursor):
            compiled = statement.compile(dialect=dialect)
            values = compiled.construct_params(params)
            for _ in range(3):
                cursor.execute("EXPLAIN ANALYZE " + str(compiled), values)
            plan = [row[0] for row in cursor.fetchall()]
            print(f"### {name}\n")
            print("\n".join("    " + line for line in plan), end="\n\n", flush=True)


if __name__ == "__main__":
    main()
