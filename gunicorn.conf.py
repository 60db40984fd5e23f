"""Gunicorn settings for medscan: ``gunicorn -c gunicorn.conf.py wsgi:app``.

Every value can be overridden by the ``GUNICORN_*`` variable named beside it (an empty value
keeps the default). The numbers are sized for a 2-core host and for synchronous requests that
run for a long time: a 4 GB bulk upload is received, unpacked and analysed inside one request.
"""

import os

from dotenv import find_dotenv, load_dotenv

from medscan.logs import gunicorn_logging

# Like the app, read .env from the working directory for local runs (the real environment
# wins); gunicorn evaluates this file before the app exists, so the app's own load comes too late.
load_dotenv(find_dotenv(usecwd=True), override=False)


def _env(name: str, default: str) -> str:
    """The variable's value, or ``default`` when it is unset or empty."""
    return os.environ.get(name) or default


def _env_int(name: str, default: int) -> int:
    """An integer variable, or ``default`` when it is unset or empty."""
    return int(_env(name, str(default)))


# Listen on every interface of the container; nginx reaches the app as app:8000.
bind = _env("GUNICORN_BIND", "0.0.0.0:8000")

# Threaded workers: a request (a long upload or a bulk run) occupies one thread, and the
# worker's main loop keeps answering the arbiter meanwhile. A sync worker would be killed by
# `timeout` in the middle of a long bulk run.
worker_class = _env("GUNICORN_WORKER_CLASS", "gthread")
# One process per core (the host has 2). Each process loads the model once.
workers = _env_int("GUNICORN_WORKERS", 2)
# Concurrent requests per process: workers x threads = 8 requests in flight by default. The
# work is mostly I/O (streaming uploads to disk, reading DICOM files), so threads beyond the
# core count still help; a CPU-heavy real model may want fewer.
threads = _env_int("GUNICORN_THREADS", 4)

# Threads each worker keeps free of requests with a body (uploads, JSON writes), so that a
# slow or stalled uploader can never take the last thread: health checks and GETs always find
# one. A body request that finds the other threads all busy with bodies is answered 503 with
# Retry-After at once (medscan/server.py); a stalled body holds its thread for at most
# MEDSCAN_BODY_TIMEOUT_S.
reserved_threads = _env_int("GUNICORN_RESERVED_THREADS", 1)
# Longest pause while reading request headers (gunicorn itself has no limit). Behind nginx,
# which reads headers itself (client_header_timeout), this never triggers.
header_timeout = _env_int("GUNICORN_HEADER_TIMEOUT", 10)


def post_worker_init(worker) -> None:
    """Bound header reads; serve body requests on at most ``threads - reserved_threads``;
    warn when the API is open."""
    from medscan.auth import warn_if_open
    from medscan.server import admit_bodies, time_out_headers

    warn_if_open(worker.wsgi)
    time_out_headers(worker, header_timeout)
    admit_bodies(worker, reserved_threads)


# With gthread this is NOT a per-request limit: it is the heartbeat of the worker process, whose
# main loop checks in about once a second while threads serve requests. A worker silent for
# this long is considered hung and restarted. It is set as long as the longest request we
# accept (a synchronous 4 GB bulk run, matching nginx's proxy_read_timeout of 3600 s) so that
# a worker blocked in one long call (e.g. C code holding the GIL) is not killed mid-run, and
# so that the value stays safe if GUNICORN_WORKER_CLASS=sync is ever chosen.
timeout = _env_int("GUNICORN_TIMEOUT", 3600)
# On SIGTERM (docker stop, a redeploy) workers get this long to finish in-flight requests,
# then they are killed: a bulk run still going then is lost and must be sent again.
# docker-compose.yml's stop_grace_period is a little longer so Docker does not SIGKILL first.
graceful_timeout = _env_int("GUNICORN_GRACEFUL_TIMEOUT", 120)
# Idle keep-alive connections from nginx are held this long; behind a proxy it should exceed
# the proxy's own reuse interval so nginx rarely reuses a connection gunicorn just closed.
keepalive = _env_int("GUNICORN_KEEPALIVE", 75)

# Recycling workers after N requests is off (0): a recycled gthread worker waits only
# graceful_timeout for its other in-flight requests, so it would cut a long bulk run short.
# Set a number (e.g. 1000, jitter 100) only if memory growth is ever observed.
max_requests = _env_int("GUNICORN_MAX_REQUESTS", 0)
# Random 0..N added per worker so that recycled workers do not restart together.
max_requests_jitter = _env_int("GUNICORN_MAX_REQUESTS_JITTER", 0)

# Whatever nginx lets through, gunicorn takes: its own refusals are HTML, nginx's are JSON
# (deploy/nginx.conf, large_client_header_buffers 4 8k, answers first). nginx passes a request
# line of up to 8190 bytes (gunicorn's maximum, and nginx sends the line unchanged), header lines
# of up to 8190 bytes to which it may append ", <address>" (X-Forwarded-For), and about a
# thousand header fields (measured, tests/server/test_nginx.py). gunicorn buffers at most
# fields x field size (64 MB) of headers of a client that bypasses nginx.
limit_request_line = _env_int("GUNICORN_LIMIT_REQUEST_LINE", 8190)
limit_request_fields = _env_int("GUNICORN_LIMIT_REQUEST_FIELDS", 4096)
limit_request_field_size = _env_int("GUNICORN_LIMIT_REQUEST_FIELD_SIZE", 16384)

# Proxies trusted for X-Forwarded-Proto (https). Gunicorn's default trusts localhost only;
# docker-compose.yml sets "*" because the app port is reachable only from the compose network.
forwarded_allow_ips = _env("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# The heartbeat file is touched every second: keep it in memory, not on the overlay disk.
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"

# Logs go to stderr (the container log) or to the files named. gunicorn's error and access
# lines and the app's share one format (medscan/logs.py): text, or one JSON object per line with
# MEDSCAN_LOG_FORMAT=json, the request id on every line.
accesslog = _env("GUNICORN_ACCESS_LOG", "-")
errorlog = _env("GUNICORN_ERROR_LOG", "-")
loglevel = _env("GUNICORN_LOG_LEVEL", "info")
logconfig_dict = gunicorn_logging(_env("MEDSCAN_LOG_FORMAT", "text").lower(), errorlog, accesslog)
# The path only (%(U)s), never the query string (%(r)s or %(q)s): searches carry patient names
# (GET /api/v1/patients?q=...). The peer (nginx, in compose) is followed by the client chain
# from X-Forwarded-For. %(M)s: duration in ms. The request id leads every line already.
access_log_format = _env(
    "GUNICORN_ACCESS_LOG_FORMAT",
    '%(h)s %({x-forwarded-for}i)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms "%(a)s"',
)

# gunicorn 25.1+ opens a control socket (for gunicornc) at $XDG_RUNTIME_DIR/gunicorn.ctl or
# ~/.gunicorn/gunicorn.ctl: one path shared by every gunicorn of the user, so a second instance
# on the host takes it over from the first. Off, unless GUNICORN_CONTROL_SOCKET names a path of
# this instance's own.
control_socket = _env("GUNICORN_CONTROL_SOCKET", "")
control_socket_disable = not control_socket
