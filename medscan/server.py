"""Slow and stalled clients cannot hold gunicorn's request threads.

Two WSGI middlewares and a gunicorn hook:

- ``BodyTimeout`` (installed by the factory): under gunicorn, every read and write on the
  client's socket gives up after ``MEDSCAN_BODY_TIMEOUT_S``. A body that stalls answers 408, a
  body whose chunked framing is broken answers 400, and the rest of the body is abandoned
  (``SHUT_RD``), so that neither gunicorn's drain after the answer nor its closing handshake
  waits on a client that has stopped sending; so is a body left unread by the view that does
  not arrive within ``DRAIN_S`` after the answer.
- ``BodyAdmission`` (installed by ``gunicorn.conf.py`` in each worker, which knows its thread
  count): at most ``slots`` requests with a body are served at once per worker; the threads left
  over stay free for requests without one (health checks, GETs, analyses). A body request
  beyond the slots is answered 503 with ``Retry-After`` at once, without reading its body.

And ``time_out_headers`` (also from ``gunicorn.conf.py``): header reads give up after
``GUNICORN_HEADER_TIMEOUT``, logged as one line. The design and its figures: bench/README.md.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.exceptions import BadRequest, RequestTimeout
from werkzeug.wrappers import Response
from werkzeug.wsgi import ClosingIterator

from medscan.logs import CLIENT_REQUEST_ID, REQUEST_ID_HEADER

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

BODY_TIMEOUT = "Request body timeout"
MALFORMED_BODY = "Malformed request body"
SERVER_BUSY = "Server busy"
BUSY_RETRY_AFTER_S = 2
# After the answer, how long and how much of an unread body is still read (then abandoned).
DRAIN_S = 1.0
DRAIN_MAX_BYTES = 64 * 1024


def has_body(environ: dict[str, Any]) -> bool:
    """Whether the request announces a body (a non-zero length, or chunked)."""
    return environ.get("CONTENT_LENGTH", "") not in ("", "0") or bool(
        environ.get("HTTP_TRANSFER_ENCODING")
    )


def abandon_body(environ: dict[str, Any]) -> None:
    """Read nothing more from this client: the rest of its body is neither waited for nor kept."""
    with contextlib.suppress(KeyError, OSError):
        environ["gunicorn.socket"].shutdown(socket.SHUT_RD)


def _framing_errors() -> tuple[type[Exception], ...]:
    """gunicorn's errors for a malformed body (bad chunk sizes, missing CRLF, bad trailers)."""
    from gunicorn.http.errors import ParseException

    return (ParseException,)


class TimedInput:
    """``wsgi.input`` whose stalls are 408 and whose framing errors are 400."""

    def __init__(self, stream: Any, environ: dict[str, Any]) -> None:
        self._stream = stream
        self._environ = environ
        self._framing_errors = _framing_errors()

    def _guarded(self, read: Callable[..., Any], *args: Any) -> Any:
        """``read(*args)``, a stall raised as 408 and broken framing as 400."""
        try:
            return read(*args)
        except TimeoutError:
            abandon_body(self._environ)
            raise RequestTimeout(BODY_TIMEOUT) from None
        except self._framing_errors:
            abandon_body(self._environ)
            raise BadRequest(MALFORMED_BODY) from None

    def read(self, *args: Any) -> bytes:
        return self._guarded(self._stream.read, *args)

    def readline(self, *args: Any) -> bytes:
        return self._guarded(self._stream.readline, *args)

    def readlines(self, *args: Any) -> list[bytes]:
        return self._guarded(self._stream.readlines, *args)

    def __iter__(self) -> TimedInput:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def finish(self) -> None:
        """After the answer: read what is left of a body briefly, else abandon it.

        A view that answers without reading the body (401, 404, 413...) leaves it to gunicorn,
        which drains it for up to 5 s per request with the thread held, then waits up to 2 s
        on its main loop for the client to close. A body that is already here is drained (so
        the connection lives on and the client surely reads the answer); one that does not
        arrive within ``DRAIN_S`` is abandoned instead.
        """
        client = self._environ["gunicorn.socket"]
        deadline = time.monotonic() + DRAIN_S
        drained = 0
        with contextlib.suppress(Exception):  # a body that failed or timed out: abandoned
            while drained <= DRAIN_MAX_BYTES and (left := deadline - time.monotonic()) > 0:
                client.settimeout(left)
                data = self._stream.read(DRAIN_MAX_BYTES)
                if not data:
                    return
                drained += len(data)
        abandon_body(self._environ)


class BodyTimeout:
    """Under gunicorn, a client that sends or takes no byte for ``seconds`` is given up."""

    def __init__(self, app: WSGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]):
        client = environ.get("gunicorn.socket")
        if client is None:
            return self.app(environ, start_response)
        client.settimeout(self.seconds)
        if not has_body(environ):  # the answer stays a plain iterable: downloads use sendfile
            return self.app(environ, start_response)
        body = TimedInput(environ["wsgi.input"], environ)
        environ["wsgi.input"] = body
        return ClosingIterator(self.app(environ, start_response), body.finish)


def busy(environ: dict[str, Any]) -> Response:
    """503 ``Server busy`` with ``Retry-After``, and the request id the app would have used."""
    sent_id = environ.get("HTTP_X_REQUEST_ID", "")
    request_id = sent_id if CLIENT_REQUEST_ID.fullmatch(sent_id) else uuid.uuid4().hex
    headers = {"Retry-After": str(BUSY_RETRY_AFTER_S), REQUEST_ID_HEADER: request_id}
    return Response(f'{{"error": "{SERVER_BUSY}"}}', 503, headers, mimetype="application/json")


class BodyAdmission:
    """At most ``slots`` requests with a body at once; the others get 503 without being read."""

    def __init__(self, app: WSGIApp, slots: int) -> None:
        self.app = app
        self._slots = threading.BoundedSemaphore(slots)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]):
        if not has_body(environ):
            return self.app(environ, start_response)
        if not self._slots.acquire(blocking=False):
            abandon_body(environ)
            return busy(environ)(environ, start_response)
        try:
            body = self.app(environ, start_response)
        except BaseException:
            self._slots.release()
            raise
        return ClosingIterator(body, self._slots.release)


def admit_bodies(worker: Any, reserved_threads: int) -> None:
    """gunicorn ``post_worker_init``: keep ``reserved_threads`` threads free of body requests."""
    slots = worker.cfg.threads - reserved_threads
    if slots < 1:
        worker.log.warning(
            "%d threads, %d reserved: no room to keep threads free of uploads",
            worker.cfg.threads,
            reserved_threads,
        )
        return
    worker.wsgi = BodyAdmission(worker.wsgi, slots)


class ClientTimeoutLine(logging.Filter):
    """gunicorn logs a client socket that timed out as a traceback: one warning line instead."""

    MESSAGES = {
        BlockingIOError: "Request headers timed out (GUNICORN_HEADER_TIMEOUT)",
        TimeoutError: "Client took no byte of the answer (MEDSCAN_BODY_TIMEOUT_S)",
    }

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        message = next((m for kind, m in self.MESSAGES.items() if isinstance(error, kind)), None)
        if message:
            record.msg, record.args = message, ()
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def time_out_headers(worker: Any, seconds: int) -> None:
    """gunicorn ``post_worker_init``: a client stalling its request headers is dropped.

    gunicorn reads headers with blocking reads that never time out; ``SO_RCVTIMEO`` on the
    listening sockets is inherited by every accepted connection and bounds each of those reads
    (a timed-out read raises ``BlockingIOError`` there).
    """
    for listener in worker.sockets:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", seconds, 0))
    worker.log.error_log.addFilter(ClientTimeoutLine())
