"""A run's state in its database row, whoever works on it (a request or a queue worker).

A run is ``queued`` or ``running`` until it ends ``succeeded``, ``failed`` or ``cancelled``.
Every state change is one guarded UPDATE (``... WHERE status = 'running'``), so a cancel, a
worker given up as lost and the worker itself can race without one undoing another: whoever
changes the status first wins, the others' UPDATEs match no row.

Whoever works on a run proves it is alive with ``heartbeat_at``, rewritten every
``MEDSCAN_RUN_HEARTBEAT_S`` by a thread (studies can take a minute each with a real model, and
unpacking a large archive longer). A ``running`` run whose heartbeat is older than
``MEDSCAN_RUN_LOST_S`` lost its process (killed, its host gone): ``reap_lost_runs`` makes it
``failed`` ("worker lost") and removes its folder. Progress costs one small UPDATE per study,
which also tells the worker whether it should stop.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from types import TracebackType

from flask import Flask, current_app
from sqlalchemy import insert, select, update

from medscan.analysis import AnalysisService
from medscan.bulk.runs import child_rows, result_counts
from medscan.bulk.studies import BulkResult
from medscan.extensions import db
from medscan.models import BulkRun, BulkRunItem, BulkRunSkippedFile, utcnow

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
ACTIVE = (QUEUED, RUNNING)
STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
WORKER_LOST = "worker lost"
INTERNAL_ERROR = "internal error"
# The archive of a queued run, in its folder under MEDSCAN_RUNS_DIR.
ARCHIVE = "archive.zip"
REAPED_AT = "medscan.runs.reaped_at"

runs = BulkRun.__table__


class RunStopped(Exception):
    """The run was cancelled, or given up as lost, while it was being worked on."""


def run_folder(run_id: uuid.UUID) -> Path:
    """Everything of a queued run: its archive and its unpacked files (``MEDSCAN_RUNS_DIR``)."""
    return Path(current_app.config["MEDSCAN_RUNS_DIR"]) / str(run_id)


def remove_folder(run_id: uuid.UUID) -> None:
    """Remove the run's folder, if any."""
    shutil.rmtree(run_folder(run_id), ignore_errors=True)


def new_run(
    file_name: str,
    status: str,
    request_id: str | None,
    analysis: AnalysisService | None = None,
    run_id: uuid.UUID | None = None,
) -> BulkRun:
    """A run row, committed: visible to every poller from now on."""
    run = BulkRun(
        id=run_id or uuid.uuid4(),
        file_name=file_name,
        created_at=utcnow(),
        status=status,
        request_id=request_id,
        heartbeat_at=utcnow() if status == RUNNING else None,
        **(model_columns(analysis) if analysis is not None else {}),
    )
    db.session.add(run)
    db.session.commit()
    return run


def model_columns(analysis: AnalysisService) -> dict:
    """Which model, at which threshold, makes a run's report."""
    return {
        "model_name": analysis.model.name,
        "model_version": analysis.model.version,
        "threshold": analysis.threshold,
    }


def guarded_update(run_id: uuid.UUID, statuses: Iterable[str], **values) -> bool:
    """Set ``values`` on the run if its status is one of ``statuses``; whether it was."""
    statement = update(runs).where(runs.c.id == run_id, runs.c.status.in_(tuple(statuses)))
    with db.engine.begin() as connection:
        return connection.execute(statement.values(**values)).rowcount == 1


def claim(run_id: uuid.UUID, analysis: AnalysisService) -> BulkRun | None:
    """Take a queued run for this worker; None if it is not queued (taken, cancelled, gone)."""
    if not guarded_update(
        run_id, [QUEUED], status=RUNNING, heartbeat_at=utcnow(), **model_columns(analysis)
    ):
        return None
    return db.session.get(BulkRun, run_id)


def fail(run_id: uuid.UUID, error: str) -> None:
    """End an active run as ``failed`` with ``error``; best effort (the reaper is the backstop)."""
    try:
        guarded_update(run_id, ACTIVE, status=FAILED, error=error, finished_at=utcnow())
    except Exception:  # the database is down: the heartbeat stops, the run is reaped later
        current_app.logger.exception("bulk run %s: could not record its failure", run_id)


def cancel(run_id: uuid.UUID) -> bool:
    """Cancel an active run and remove its folder; False if it was not active any more."""
    cancelled = guarded_update(run_id, ACTIVE, status=CANCELLED, finished_at=utcnow())
    if cancelled:
        remove_folder(run_id)
    return cancelled


def finish(run_id: uuid.UUID, result: BulkResult) -> bool:
    """Store the result's rows and mark the run ``succeeded``, in one transaction.

    False (nothing stored) if the run stopped being ``running`` meanwhile (cancelled, reaped).
    """
    with db.engine.connect() as connection:
        done = connection.execute(
            update(runs)
            .where(runs.c.id == run_id, runs.c.status == RUNNING)
            .values(
                status=SUCCEEDED,
                finished_at=utcnow(),
                progress_done=len(result.rows),
                progress_total=len(result.rows),
                **result_counts(result),
            )
        )
        if done.rowcount != 1:
            connection.rollback()
            return False
        items, skipped = child_rows(run_id, result)
        if items:
            connection.execute(insert(BulkRunItem.__table__), items)
        if skipped:
            connection.execute(insert(BulkRunSkippedFile.__table__), skipped)
        connection.commit()
    return True


class Tracker:
    """Keeps a running run's row current: a heartbeat thread, and progress after each study.

    ``progress`` raises RunStopped once the run is no longer ``running`` (cancelled, reaped),
    so the work stops at the next study.
    """

    def __init__(self, app: Flask, run_id: uuid.UUID) -> None:
        self.app = app
        self.run_id = run_id
        self.stopped = threading.Event()
        self.finished = threading.Event()
        self.thread = threading.Thread(target=self.beat, name=f"heartbeat-{run_id}", daemon=True)

    def __enter__(self) -> Tracker:
        self.thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.finished.set()
        self.thread.join()

    def progress(self, done: int, total: int) -> None:
        """Record ``done`` of ``total`` studies (one UPDATE); raise RunStopped if stopped."""
        if self.stopped.is_set() or not guarded_update(
            self.run_id, [RUNNING], progress_done=done, progress_total=total
        ):
            raise RunStopped

    def beat(self) -> None:
        """Every MEDSCAN_RUN_HEARTBEAT_S until the work ends: rewrite ``heartbeat_at``."""
        interval = self.app.config["MEDSCAN_RUN_HEARTBEAT_S"]
        with self.app.app_context():
            while not self.finished.wait(interval):
                try:
                    alive = guarded_update(self.run_id, [RUNNING], heartbeat_at=utcnow())
                except Exception as exc:  # the database is away: try again at the next beat
                    self.app.logger.warning("bulk run %s: heartbeat failed: %s", self.run_id, exc)
                    continue
                if not alive:
                    self.stopped.set()
                    return


def reap_lost_runs() -> list[uuid.UUID]:
    """Fail the running runs whose heartbeat is older than MEDSCAN_RUN_LOST_S; remove folders.

    Also removes folders in MEDSCAN_RUNS_DIR older than that whose run is over or gone (left by
    a crash between a cancel and its folder's removal). Returns the runs failed.
    """
    lost_s = current_app.config["MEDSCAN_RUN_LOST_S"]
    cutoff = utcnow() - timedelta(seconds=lost_s)
    statement = (
        update(runs)
        .where(runs.c.status == RUNNING, runs.c.heartbeat_at < cutoff)
        .values(status=FAILED, error=WORKER_LOST, finished_at=utcnow())
        .returning(runs.c.id)
    )
    with db.engine.begin() as connection:
        lost = list(connection.scalars(statement))
    for run_id in lost:
        current_app.logger.warning("bulk run %s: %s", run_id, WORKER_LOST)
        remove_folder(run_id)
    remove_stale_folders(time.time() - lost_s)
    return lost


def remove_stale_folders(older_than: float) -> None:
    """Remove run folders last changed before ``older_than`` whose run is not active."""
    base = Path(current_app.config["MEDSCAN_RUNS_DIR"])
    folders = {}
    for entry in base.iterdir() if base.is_dir() else ():
        try:
            run_id = uuid.UUID(entry.name)
        except ValueError:
            continue
        if entry.is_dir() and not entry.is_symlink() and entry.stat().st_mtime < older_than:
            folders[run_id] = entry
    if not folders:
        return
    with db.engine.connect() as connection:
        active = set(
            connection.scalars(
                select(runs.c.id).where(runs.c.id.in_(folders), runs.c.status.in_(ACTIVE))
            )
        )
    for run_id, folder in folders.items():
        if run_id not in active:
            shutil.rmtree(folder, ignore_errors=True)


def reap_when_due(app: Flask) -> None:
    """``reap_lost_runs`` at most once per MEDSCAN_RUN_HEARTBEAT_S in this process."""
    now = time.monotonic()
    last = app.extensions.get(REAPED_AT)
    if last is not None and now - last < app.config["MEDSCAN_RUN_HEARTBEAT_S"]:
        return
    app.extensions[REAPED_AT] = now
    reap_lost_runs()
