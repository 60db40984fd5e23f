"""Logging to stderr with a request id on every line, and ``X-Request-ID`` on every response."""

from __future__ import annotations

import logging
import re
import uuid

from flask import Flask, Response, g, has_request_context, request

REQUEST_ID_HEADER = "X-Request-ID"
# A client's id is kept when it is a plain token; anything else (spaces, 1 kB...) is replaced.
# deploy/nginx.conf applies the same rule, so behind nginx one id holds end to end.
CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
LOG_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] [%(request_id)s] %(name)s: %(message)s"


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record ("-" outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = g.get("request_id", "-") if has_request_context() else "-"
        return True


def assign_request_id() -> None:
    """Keep the client's (or nginx's) ``X-Request-ID`` when sane, else make one."""
    sent = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = sent if CLIENT_REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex


def echo_request_id(response: Response) -> Response:
    """Return the request id to the client (and to gunicorn's access log)."""
    response.headers[REQUEST_ID_HEADER] = g.get("request_id") or uuid.uuid4().hex
    return response


def register_logging(app: Flask) -> None:
    """Log to stderr at ``MEDSCAN_LOG_LEVEL`` with request ids; ids on every response."""
    level = app.config["MEDSCAN_LOG_LEVEL"].upper()
    root = logging.getLogger()
    if not any(isinstance(f, RequestIdFilter) for h in root.handlers for f in h.filters):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.addFilter(RequestIdFilter())
        root.addHandler(handler)
    root.setLevel(level)
    app.logger.setLevel(level)
    app.before_request(assign_request_id)
    app.after_request(echo_request_id)
