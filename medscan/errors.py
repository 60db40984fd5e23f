"""Every error as ``{"error": ...}`` JSON: HTTP errors, validation errors and crashes alike."""

from __future__ import annotations

import errno
from typing import Any

from flask import Flask, Response, current_app, json
from werkzeug.exceptions import HTTPException, InternalServerError

from medscan.bulk.archive import ArchiveError, NotEnoughDiskSpace
from medscan.extensions import db


def error_body(message: str, details: Any = None) -> dict[str, Any]:
    """The one error shape of the API."""
    body: dict[str, Any] = {"error": message}
    if details:
        body["details"] = details
    return body


def _validation_details(messages: dict[str, Any]) -> dict[str, Any]:
    """Flatten webargs' ``{location: {field: [...]}}`` into ``{field: [...]}``."""
    details: dict[str, Any] = {}
    for location_messages in messages.values():
        if isinstance(location_messages, dict):
            details.update(location_messages)
        else:
            details["_schema"] = location_messages
    return details


def _summary(details: dict[str, Any]) -> str:
    """A one-line human reading of validation details, e.g. ``first_name: Missing data``."""
    parts = []
    for field, messages in details.items():
        text = messages[0] if isinstance(messages, list) and messages else messages
        if isinstance(text, dict):
            text = "invalid value"
        parts.append(str(text) if field == "_schema" else f"{field}: {text}")
    return "; ".join(parts)


def json_error(error: HTTPException) -> Response:
    """Render an HTTP error as JSON, keeping its headers (``Allow``, ``Retry-After``...)."""
    if isinstance(error, InternalServerError):
        db.session.rollback()
    data = getattr(error, "data", None) or {}
    details = _validation_details(data["messages"]) if "messages" in data else None
    if details:
        message = _summary(details)
    elif data.get("message"):
        message = data["message"]
    elif error.description and error.description != type(error).description:
        message = error.description
    else:
        message = error.name
    response = error.get_response()
    response.set_data(json.dumps(error_body(message, details)))
    response.mimetype = "application/json"
    for name, value in (data.get("headers") or {}).items():
        response.headers[name] = value
    return response


def archive_error(error: ArchiveError) -> Response:
    """A refused ZIP: its own status and message (``Retry-After`` when disk space is short)."""
    response = Response(json.dumps(error_body(error.message)), error.status)
    response.mimetype = "application/json"
    if isinstance(error, NotEnoughDiskSpace):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


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
    """Route every HTTP error (and every crash, already logged by Flask) to ``json_error``."""
    app.register_error_handler(HTTPException, json_error)
    app.register_error_handler(ArchiveError, archive_error)
    app.register_error_handler(OSError, disk_full)
