"""The bare baseline for bench/load.py: Flask answering ``GET /patients/<id>`` with one raw query.

gunicorn -c gunicorn.conf.py 'bench.baseline_app:app'    (BASELINE_DATABASE_URL set)
"""

from __future__ import annotations

import os

from flask import Flask, abort, jsonify
from psycopg2.pool import ThreadedConnectionPool

app = Flask(__name__)
# min = max: psycopg2's pool closes connections beyond ``minconn`` when they are returned.
pool = ThreadedConnectionPool(8, 8, os.environ["BASELINE_DATABASE_URL"])


@app.get("/patients/<patient_id>")
def patient(patient_id: str):
    """One patient by id, straight from psycopg2."""
    connection = pool.getconn()
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id, first_name, last_name, description, created_at, updated_at "
                "FROM patients WHERE id = %s",
                (patient_id,),
            )
            row = cursor.fetchone()
        connection.rollback()
    finally:
        pool.putconn(connection)
    if row is None:
        abort(404)
    keys = ("id", "first_name", "last_name", "description", "created_at", "updated_at")
    return jsonify(dict(zip(keys, map(str, row), strict=True)))
