"""Asynchronous bulk runs on a task queue: Celery with Redis as broker (``MEDSCAN_BROKER_URL``).

Flask's documented pattern (flask.palletsprojects.com, "Background Tasks with Celery"): one
Celery app per Flask app, tasks run in its app context. Celery only carries run ids: a run's
state, progress and results live in its database row (medscan.bulk.tracking), so there is no
result backend. Without ``MEDSCAN_BROKER_URL`` nothing here is set up and every run is
synchronous.

Delivery: a message is acknowledged once its task has returned (``acks_late``) and each worker
reserves one message at a time, so the runs a killed worker had taken but not started go back
to the queue when Redis's visibility timeout (``MEDSCAN_RUN_LOST_S``) expires. A run that a
killed worker had started is failed by the heartbeat rule instead; its message, redelivered,
finds the run no longer ``queued`` and is dropped.
"""

from __future__ import annotations

import threading
import uuid

import click
from celery import Celery, Task
from flask import Flask, current_app
from flask.cli import with_appcontext
from kombu.exceptions import OperationalError

from medscan.analysis import analysis_service
from medscan.bulk.tasks import bulk_run
from medscan.bulk.tracking import reap_lost_runs

CELERY_EXTENSION = "celery"
BULK_RUN_TASK = "medscan.bulk_run"
QUEUE_NAME = "medscan-bulk"
# Seconds a broker connection attempt may take when a run is posted.
CONNECT_TIMEOUT_S = 5


class QueueUnavailable(Exception):
    """The broker could not take the run."""


def register_queue(app: Flask) -> None:
    """With ``MEDSCAN_BROKER_URL``: a Celery app for this Flask app (and its bulk-run task)."""
    if app.config["MEDSCAN_BROKER_URL"]:
        celery_init_app(app)


def celery_init_app(app: Flask) -> Celery:
    """Flask's pattern: a Celery app whose tasks run inside this app's context."""

    class FlaskTask(Task):
        """A task run inside the Flask app's context."""

        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery = Celery(app.name, task_cls=FlaskTask)
    celery.conf.update(
        broker_url=app.config["MEDSCAN_BROKER_URL"],
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": app.config["MEDSCAN_RUN_LOST_S"],
            "socket_connect_timeout": CONNECT_TIMEOUT_S,
            # Publishing gives up after one retry: a client waits for its 503, not for ever.
            "max_retries": 1,
        },
        task_default_queue=QUEUE_NAME,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
    )
    celery.task(name=BULK_RUN_TASK)(bulk_run)
    app.extensions[CELERY_EXTENSION] = celery
    return celery


def queue_configured() -> bool:
    """Whether the current app has a task queue."""
    return CELERY_EXTENSION in current_app.extensions


def enqueue(run_id: uuid.UUID) -> None:
    """Send the run to the workers; QueueUnavailable if the broker cannot be reached."""
    celery: Celery = current_app.extensions[CELERY_EXTENSION]
    try:
        celery.send_task(BULK_RUN_TASK, args=[str(run_id)], retry=False)
    except OperationalError as exc:
        raise QueueUnavailable(str(exc)) from exc


def reap_periodically(app: Flask, stop: threading.Event) -> None:
    """In a worker: fail lost runs and remove their folders every MEDSCAN_RUN_HEARTBEAT_S."""
    with app.app_context():
        while not stop.wait(app.config["MEDSCAN_RUN_HEARTBEAT_S"]):
            try:
                reap_lost_runs()
            except Exception as exc:  # the database is away: next time
                app.logger.warning("reaping lost bulk runs failed: %s", exc)


@click.command(
    "worker",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Runs worked on at once by this process (threads sharing one model).",
)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
@with_appcontext
def worker_command(concurrency: int, celery_args: tuple[str, ...]) -> None:
    """Work on asynchronous bulk runs (a Celery worker; extra arguments go to Celery)."""
    app = current_app._get_current_object()
    if not queue_configured():
        raise click.ClickException("MEDSCAN_BROKER_URL is not set: there is no queue to work on")
    analysis_service().load_model_now()  # before the first run: a bad model stops the start
    stop = threading.Event()
    reaper = threading.Thread(target=reap_periodically, args=(app, stop), daemon=True)
    reaper.start()
    try:
        app.extensions[CELERY_EXTENSION].worker_main(
            [
                "worker",
                "--pool=threads",
                f"--concurrency={concurrency}",
                f"--queues={QUEUE_NAME}",
                f"--loglevel={app.config['MEDSCAN_LOG_LEVEL']}",
                "--without-gossip",
                "--without-mingle",
                *celery_args,
            ]
        )
    finally:
        stop.set()
