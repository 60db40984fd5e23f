"""Reads for GET endpoints: Core statements on a connection outside any transaction.

On PostgreSQL the ``reads`` bind is a second engine in autocommit mode. A statement there runs
on its own snapshot, as it would under READ COMMITTED inside a transaction, without the BEGIN
and ROLLBACK round trips around it and without the ORM session's per-request bookkeeping.
Where two values must agree (a page and its total, a total and the version it was counted at)
one statement reads both.
Writes keep ``db.session`` and its transactions. SQLite needs no second engine: its driver
starts no transaction for a SELECT.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import abort
from sqlalchemy import Column, Connection, Engine, Executable, RowMapping, Table
from sqlalchemy.engine import make_url

from medscan.api import parse_uuid
from medscan.extensions import db

READS_BIND = "reads"


def reads_binds(database_uri: str) -> dict[str, dict[str, Any]]:
    """``SQLALCHEMY_BINDS`` for ``database_uri``: an autocommit ``reads`` engine on PostgreSQL."""
    if make_url(database_uri).get_backend_name() != "postgresql":
        return {}
    return {READS_BIND: {"url": database_uri, "isolation_level": "AUTOCOMMIT"}}


def reads_engine() -> Engine:
    """The engine reads go through: the ``reads`` bind, or the default engine without one."""
    return db.engines.get(READS_BIND, db.engine)


def read_connection() -> Connection:
    """A pooled connection for reads; use it as a context manager."""
    return reads_engine().connect()


def columns_for(schema: type[ma.Schema], table: Table) -> list[Column]:
    """The columns of ``table`` that ``schema`` dumps, so a read fetches nothing more."""
    return [table.c[name] for name in schema().fields if name in table.c]


def read_one_or_404(statement: Executable, raw_id: str, message: str) -> RowMapping:
    """The row ``statement`` finds for the id bound as ``:id``; 404 when none, or not a UUID."""
    row_id = parse_uuid(raw_id)
    row = None
    if row_id is not None:
        with read_connection() as connection:
            row = connection.execute(statement, {"id": row_id}).mappings().first()
    if row is None:
        abort(404, message)
    return row
