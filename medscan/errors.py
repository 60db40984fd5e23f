"""The answers to errors that are not HTTP errors: archives, the disk, the database.

HTTP errors, validation errors and crashes are rendered by ``medscan.api.MedscanApi``."""

from __future__ import annotations

import traceback
from contextlib import suppress

from flask import Flask, Response, current_app, json
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from medscan.api import error_body
from medscan.extensions import db
from medscan.safezip import ArchiveError, NotEnoughDiskSpace, UnpackLimitExceeded
from medscan.safezip.errors import DISK_FULL

#: The status of a refused ZIP; any other ArchiveError is a 400.
ARCHIVE_STATUSES: dict[type[ArchiveError], int] = {
    UnpackLimitExceeded: 413,
    NotEnoughDiskSpace: 503,
}
#: Seconds a client is asked to wait after a 503 for disk space.
DISK_RETRY_AFTER_S = 60


def archive_error(error: ArchiveError) -> Response:
    """A refused ZIP: its status and message (``Retry-After`` when disk space is short)."""
    status = next((code for kind, code in ARCHIVE_STATUSES.items() if isinstance(error, kind)), 400)
    response = Response(json.dumps(error_body(error.message)), status)
    response.mimetype = "application/json"
    if isinstance(error, NotEnoughDiskSpace):
        response.headers["Retry-After"] = str(DISK_RETRY_AFTER_S)
    return response


# Seconds a client is asked to wait after a 503 for the database.
DATABASE_RETRY_AFTER_S = 5
# The database is down, unreachable, or gave up waiting (lock or statement timeout).
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeout)


def database_error(error: SQLAlchemyError) -> Response:
    """503 ``Database unavailable`` in one log line; any other database error a 500 whose log
    names the error class and code but never its message.

    psycopg2 binds parameters into the SQL text, and PostgreSQL quotes that text (``LINE 1:
    ... 'Иванов'``) and the values (``DETAIL: Key (...)=(...)``) in its messages, so messages
    of failed statements are never logged.
    """
    with suppress(SQLAlchemyError):
        db.session.rollback()
    cause = getattr(error, "orig", None) or error
    # SQLite reports its SQL errors (no such column...) as OperationalError too.
    sql_error = getattr(cause, "sqlite_errorname", None) == "SQLITE_ERROR"
    if isinstance(error, DATABASE_UNAVAILABLE) and not sql_error:
        # Connection and timeout messages carry no SQL; the first line says enough.
        first_line = next(iter(str(cause).strip().splitlines()), "")
        current_app.logger.warning("Database unavailable: %s: %s", type(cause).__name__, first_line)
        response = Response(json.dumps(error_body("Database unavailable")), 503)
        response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
    else:
        code = getattr(cause, "pgcode", None) or getattr(cause, "sqlite_errorname", None)
        stack = "".join(traceback.format_tb(error.__traceback__))
        current_app.logger.error(
            "Database error %s (%s), message withheld:\n%s", type(cause).__name__, code, stack
        )
        response = Response(json.dumps(error_body("Internal Server Error")), 500)
    response.mimetype = "application/json"
    return response


def disk_full(error: OSError) -> Response:
    """503 ``Not enough disk space`` (with ``Retry-After``) for a full disk or quota.

    Other OS errors are re-raised: Flask logs them and answers 500. The request's partial
    upload files are removed when it ends (``uploads.discard_uploads``).
    """
    if error.errno not in DISK_FULL:
        raise error
    current_app.logger.warning("Not enough disk space: %s", error.strerror)  # no file names
    return archive_error(NotEnoughDiskSpace())


def register_errors(app: Flask) -> None:
    """Answer the errors of archives, the disk and the database with the error body.

    HTTP errors (and crashes, already logged by Flask) are the Api's (``MedscanApi``).
    """
    app.register_error_handler(ArchiveError, archive_error)
    app.register_error_handler(OSError, disk_full)
    app.register_error_handler(SQLAlchemyError, database_error)
