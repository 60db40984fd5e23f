"""Reads for GET endpoints: Core statements on a connection outside any transaction.

On PostgreSQL the ``reads`` bind is a second engine in autocommit mode. A statement there runs
on its own snapshot, as it would under READ COMMITTED inside a transaction, without the BEGIN
and ROLLBACK round trips around it and without the ORM session's per-request bookkeeping.
Where two values must agree (a page and its total, a total and the version it was counted at)
one statement reads both.
The rule: a GET reads only through this module (``read_one_or_404``, ``read_connection``,
``PageQuery``), with Core statements naming the columns it needs, and answers with the rows as
read (the response schema shapes them; no ORM object is built from a row). ``db.session`` is for
writes and for the reads a write depends on (``api.get_or_404`` before a change), inside the
write's transaction. One exception: an answer too large for memory (a run's report) is read by
``stream_rows`` through a server-side cursor, which needs a transaction, so on the default
engine. Writes keep ``db.session`` and its transactions. SQLite needs no second engine: its
driver starts no transaction for a SELECT.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import marshmallow as ma
from flask import abort
from sqlalchemy import Column, Connection, Engine, Executable, Row, RowMapping, Table
from sqlalchemy.engine import make_url

from medscan.api import parse_uuid
from medscan.extensions import db

READS_BIND = "reads"


# Seconds a PostgreSQL connection attempt may take before the request answers 503.
CONNECT_TIMEOUT_S = 5
# Rows a streamed read holds in memory at a time.
STREAM_BATCH = 1000


def engine_options(database_uri: str, lock_timeout_s: int, statement_timeout_s: int) -> dict:
    """Options of every engine: failures that leak nothing and end, connections that are alive.

    SQL parameters (patient names, search words, file names) never reach logs or exception
    messages; a pooled connection is pinged before use, so one left stale by a database restart
    is replaced instead of failing a request; waits for locks and statements are bounded
    (0 = no bound on PostgreSQL; SQLite's busy timeout then keeps the driver's 5 s).
    """
    url = make_url(database_uri)
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "postgresql":
        connect_args["options"] = (
            f"-c lock_timeout={lock_timeout_s * 1000} "
            f"-c statement_timeout={statement_timeout_s * 1000}"
        )
        if "connect_timeout" not in url.query:
            connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
    elif url.get_backend_name() == "sqlite" and lock_timeout_s:
        connect_args["timeout"] = lock_timeout_s
    return {"pool_pre_ping": True, "hide_parameters": True, "connect_args": connect_args}


def reads_binds(database_uri: str, options: dict) -> dict[str, dict[str, Any]]:
    """``SQLALCHEMY_BINDS`` for ``database_uri``: an autocommit ``reads`` engine on PostgreSQL.

    It has the same ``options`` as the default engine.
    """
    if make_url(database_uri).get_backend_name() != "postgresql":
        return {}
    return {READS_BIND: {**options, "url": database_uri, "isolation_level": "AUTOCOMMIT"}}


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


def stream_rows(statement: Executable, params: Mapping[str, Any]) -> Iterator[Row]:
    """The rows of ``statement``, fetched a batch at a time, on a connection of the default engine.

    The connection (and its transaction, which the cursor needs) lasts until the rows are
    exhausted or the iterator is closed.
    """
    with db.engine.connect() as connection:
        yield from connection.execute(statement.execution_options(yield_per=STREAM_BATCH), params)
