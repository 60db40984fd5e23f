"""Logging with a request id on every line, and ``X-Request-ID`` on every response.

One format (``formatter``) serves the app and gunicorn (``gunicorn_logging`` is
``gunicorn.conf.py``'s ``logconfig_dict``), so the app's lines and gunicorn's error and access
lines look alike: readable text, or one JSON object per line with ``MEDSCAN_LOG_FORMAT=json``.
No line carries a query string, a patient's name, a file or entry name or an SQL parameter: the
app logs none, access lines keep the path only, and ``RedactRequests`` cuts the request line
out of gunicorn's own error lines.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from flask import Flask, Response, g, has_request_context, request
from pythonjsonlogger.json import JsonFormatter

from medscan.config import LOG_FORMATS

REQUEST_ID_HEADER = "X-Request-ID"
# A client's id is kept when it is a plain token; anything else (spaces, 1 kB...) is replaced.
# deploy/nginx.conf applies the same rule, so behind nginx one id holds end to end.
CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
LOG_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] [%(request_id)s] %(name)s: %(message)s"
# python-json-logger takes the fields named here; access lines add ACCESS_FIELDS.
JSON_FIELDS = "%(levelname)s %(name)s %(process)d %(request_id)s %(message)s"
# Access-log atoms of gunicorn copied into fields of their own (JSON); never the query string.
ACCESS_FIELDS = {"m": "method", "U": "path", "s": "status", "B": "bytes", "M": "duration_ms"}


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record: the request's, gunicorn's access line's, or "-"."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "gunicorn.access" and isinstance(record.args, dict):
            record.request_id = record.args["{x-request-id}o"]  # gunicorn answers "-" if none
            for atom, field in ACCESS_FIELDS.items():
                value = str(record.args[atom])  # "200"; "-" for no bytes
                setattr(record, field, int(value) if value.isdigit() else value)
        elif not hasattr(record, "request_id"):
            record.request_id = g.get("request_id", "-") if has_request_context() else "-"
        return True


class RedactRequests(logging.Filter):
    """Keeps request lines out of gunicorn's error lines.

    A refused request is logged with the reason only (gunicorn quotes the raw line, search words
    and all), a failed one by its path.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if message.startswith("Invalid request from ip="):
            record.msg = re.split(r"['\"]", message, maxsplit=1)[0].rstrip(": ")
        elif message.startswith("Error handling request") and isinstance(record.args, tuple):
            record.args = tuple(str(arg).partition("?")[0] for arg in record.args)
        return True


def formatter(log_format: str) -> logging.Formatter:
    """The one line format: ``LOG_FORMAT`` text, or JSON objects of ``JSON_FIELDS``."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"MEDSCAN_LOG_FORMAT must be text or json, got {log_format!r}")
    if log_format == "text":
        return logging.Formatter(LOG_FORMAT)
    return JsonFormatter(
        JSON_FIELDS,
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp=True,
        json_ensure_ascii=False,
    )


def gunicorn_logging(log_format: str, error_log: str, access_log: str) -> dict[str, Any]:
    """gunicorn's ``logconfig_dict``: error and access lines, in one format.

    gunicorn's error lines and the app's go to ``error_log``, its access lines to ``access_log``
    ("-" = stderr, else a file).
    """

    def handler(destination: str) -> dict[str, Any]:
        """A handler writing to ``destination``, formatted and filtered as every line is."""
        where = (
            {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
            if destination == "-"
            else {"class": "logging.FileHandler", "filename": destination}
        )
        return {**where, "formatter": "medscan", "filters": ["redact", "request_id"]}

    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": RedactRequests}, "request_id": {"()": RequestIdFilter}},
        "formatters": {"medscan": {"()": formatter, "log_format": log_format}},
        "handlers": {"error": handler(error_log), "access": handler(access_log)},
        "root": {"handlers": ["error"]},
        "loggers": {
            "gunicorn.error": {"handlers": ["error"], "propagate": False},
            "gunicorn.access": {"handlers": ["access"], "propagate": False},
        },
    }


def assign_request_id() -> None:
    """Keep the client's (or nginx's) ``X-Request-ID`` when sane, else make one."""
    sent = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = sent if CLIENT_REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex


def echo_request_id(response: Response) -> Response:
    """Send the request id back to the client (and to gunicorn's access log)."""
    response.headers[REQUEST_ID_HEADER] = g.get("request_id") or uuid.uuid4().hex
    return response


def register_logging(app: Flask) -> None:
    """Log at ``MEDSCAN_LOG_LEVEL`` in ``MEDSCAN_LOG_FORMAT``, request ids on every line.

    Lines go to stderr unless gunicorn has set up logging already; every response carries its
    request id.
    """
    level = app.config["MEDSCAN_LOG_LEVEL"].upper()
    root = logging.getLogger()
    if not any(isinstance(f, RequestIdFilter) for h in root.handlers for f in h.filters):
        handler = logging.StreamHandler()
        handler.setFormatter(formatter(app.config["MEDSCAN_LOG_FORMAT"]))
        handler.addFilter(RequestIdFilter())
        root.addHandler(handler)
    root.setLevel(level)
    app.logger.setLevel(level)
    app.before_request(assign_request_id)
    app.after_request(echo_request_id)
