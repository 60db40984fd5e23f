"""Bulk runs API: ``/api/bulk-runs``: a ZIP of studies in, XLSX and CSV triage reports out."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from flask import current_app, g, request, send_file
from flask.views import MethodView
from flask_smorest import abort as abort_with_headers
from sqlalchemy import RowMapping, bindparam, select
from werkzeug.datastructures import FileStorage

from medscan.analysis import analysis_service
from medscan.analyzer.report import ReportRow
from medscan.api import (
    LOCATION,
    Blueprint,
    content_disposition,
    download_type,
    get_or_404,
    location_of,
)
from medscan.bulk.queue import QueueUnavailable, enqueue, queue_configured
from medscan.bulk.report_files import ErrorLine, csv_lines, write_xlsx
from medscan.bulk.runs import about_sheet, error_lines, report_rows
from medscan.bulk.schemas import (
    BulkRunDetailSchema,
    BulkRunPageSchema,
    BulkRunQuerySchema,
    BulkUploadSchema,
)
from medscan.bulk.studies import BulkResult, process_archive
from medscan.bulk.tracking import (
    ACTIVE,
    ARCHIVE,
    INTERNAL_ERROR,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    RunStopped,
    Tracker,
    cancel,
    fail,
    finish,
    new_run,
    reap_when_due,
    remove_folder,
    run_folder,
)
from medscan.extensions import db
from medscan.models import BulkRun, BulkRunItem, BulkRunSkippedFile
from medscan.paging import PageQuery
from medscan.reads import read_connection, read_one_or_404, stream_rows
from medscan.safezip import ArchiveError, NotAZip, check_zip
from medscan.schemas import IdSchema
from medscan.uploads import SpooledUpload, client_file_name, receives_uploads
from medscan.workspace import sweep_stale_work_dirs

bp = Blueprint("bulk", __name__, url_prefix="/api/bulk-runs", description="Bulk runs")

NOT_FOUND = "Run not found"
TOO_LARGE = "ZIP too large. Max {max_mb} MB"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV = "text/csv"
# What a run shows (BulkRunSchema): every column but the heartbeat.
RUN_COLUMNS = [column for column in BulkRun.__table__.c if column.key != "heartbeat_at"]
RUN_BY_ID = select(*RUN_COLUMNS).where(BulkRun.id == bindparam("id"))
ALL_RUNS = PageQuery(RUN_COLUMNS)
RUNS_OF_REQUEST = PageQuery(RUN_COLUMNS, [BulkRun.request_id == bindparam("request_id")])
# A run's report rows, its Failure rows and its skipped files, in order.
RUN_ITEMS = (
    select(BulkRunItem.report, BulkRunItem.error)
    .where(BulkRunItem.run_id == bindparam("id"))
    .order_by(BulkRunItem.position)
)
RUN_FAILURES = RUN_ITEMS.where(BulkRunItem.error.is_not(None))
RUN_SKIPPED_FILES = (
    select(BulkRunSkippedFile.path, BulkRunSkippedFile.reason)
    .where(BulkRunSkippedFile.run_id == bindparam("id"))
    .order_by(BulkRunSkippedFile.position)
)
NOT_FINISHED = "Run not finished"
QUEUE_UNAVAILABLE = "Queue unavailable"
# Seconds a client is asked to wait: before polling an unfinished run's report again, and after
# the broker refused a run.
POLL_AFTER_S = 5
QUEUE_RETRY_AFTER_S = 10


@bp.before_request
def reap_lost_runs() -> None:
    """Runs whose worker died are failed within MEDSCAN_RUN_LOST_S, workers or not."""
    reap_when_due(current_app._get_current_object())


def run_archive(archive: Path, file_name: str, progress: Callable[[int, int], None]) -> BulkResult:
    """Unpack and analyse ``archive`` in a work folder that is removed whatever happens."""
    service = analysis_service()
    sweep_stale_work_dirs(service.work_folder)
    started = time.perf_counter()

    def log_progress(done: int, total: int) -> None:
        elapsed = time.perf_counter() - started
        # File names can carry patient names: lines are tied to the run by the request id.
        current_app.logger.info("bulk run: study %d/%d, %.1f s", done, total, elapsed)
        progress(done, total)

    with service.work_dir() as folder:
        return process_archive(
            archive,
            folder,
            archive_name=file_name,
            limits=service.limits,
            model=service.model,
            threshold=service.threshold,
            progress=log_progress,
        )


def prefers_async() -> bool:
    """Whether the request says ``Prefer: respond-async`` (RFC 7240)."""
    preferences = ",".join(request.headers.getlist("Prefer")).split(",")
    return any(
        p.split(";")[0].split("=")[0].strip().lower() == "respond-async" for p in preferences
    )


def run_synchronously(archive: Path, file_name: str) -> BulkRun:
    """Work on the archive in this request, the run visible as ``running`` meanwhile."""
    run = new_run(file_name, RUNNING, g.request_id, analysis_service())
    try:
        with Tracker(current_app._get_current_object(), run.id) as tracker:
            result = run_archive(archive, file_name, tracker.progress)
            finished = finish(run.id, result)
    except RunStopped:
        finished = False
    except ArchiveError as exc:  # unpack limits, disk space: answered as before, run failed
        fail(run.id, exc.message)
        raise
    except BaseException:
        fail(run.id, INTERNAL_ERROR)
        raise
    current_app.logger.info("bulk run %s: %s", run.id, "done" if finished else "cancelled")
    return run


def keep_upload(spooled: SpooledUpload, target: Path) -> None:
    """Move the spooled archive to ``target`` (copied when that is another file system)."""
    try:
        spooled.persist(target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.copyfile(spooled.path, target)  # the spooled file goes with the request
        with open(target, "rb") as copied:  # as durable as the rename's path (persist fsyncs)
            os.fsync(copied.fileno())


def queue_run(upload: FileStorage, file_name: str) -> BulkRun:
    """Keep the archive in the run's folder and queue the run; 503 if the broker is down.

    A refused run leaves nothing behind: neither its row nor its archive.
    """
    run_id = uuid.uuid4()
    folder = run_folder(run_id)
    try:
        folder.mkdir(parents=True)
        keep_upload(upload.stream, folder / ARCHIVE)
        run = new_run(file_name, QUEUED, g.request_id, run_id=run_id)
        try:
            enqueue(run.id)
        except QueueUnavailable as exc:
            current_app.logger.error("bulk run %s not queued: %s", run.id, exc)
            db.session.delete(run)
            db.session.commit()
            abort_with_headers(
                503, message=QUEUE_UNAVAILABLE, headers={"Retry-After": str(QUEUE_RETRY_AFTER_S)}
            )
    except BaseException:
        remove_folder(run_id)
        raise
    return run


@bp.route("")
class BulkRunCollection(MethodView):
    """Bulk runs."""

    @bp.doc(operationId="listBulkRuns")
    @bp.arguments(BulkRunQuerySchema(), location="query")
    @bp.response(200, BulkRunPageSchema)
    def get(self, args: dict):
        """List runs (without their rows), newest first; ``request_id`` finds a client's run."""
        if args.get("request_id") is not None:
            return RUNS_OF_REQUEST.fetch(
                args["limit"], args["offset"], request_id=args["request_id"]
            )
        return ALL_RUNS.fetch(args["limit"], args["offset"])

    @receives_uploads(
        into=lambda: analysis_service().work_folder,
        max_mb="MEDSCAN_MAX_BULK_MB",
        too_large=TOO_LARGE,
        hashed=False,
    )
    @bp.doc(operationId="createBulkRun")
    @bp.arguments(BulkUploadSchema(), location="multipart")
    @bp.response(201, IdSchema)
    @bp.alt_response(
        202,
        schema=IdSchema,
        headers={**LOCATION, "Preference-Applied": {"schema": {"type": "string"}}},
        description="Prefer: respond-async with a queue configured: the run is queued",
    )
    @bp.alt_response(
        413,
        message=TOO_LARGE.format(max_mb=4096),
        description="Body over MEDSCAN_MAX_BULK_MB, or over an unpack limit",
    )
    @bp.alt_response(
        503,
        message="Not enough disk space",
        description="Not enough disk space to unpack, or Queue unavailable (see Retry-After)",
    )
    def post(self, files: dict):
        """Upload a ZIP of studies; answers when every study has been analysed (201), or at
        once with ``Prefer: respond-async`` when a queue is configured (202)."""
        upload = files["file"]
        file_name = client_file_name(upload)
        if not file_name.lower().endswith(".zip"):
            raise NotAZip(detail=f"file name {file_name!r}")
        check_zip(upload.stream.path, analysis_service().limits)
        if prefers_async() and queue_configured():
            run = queue_run(upload, file_name)
            headers = location_of("bulk.BulkRunItemView", run_id=run.id)
            return {"id": run.id}, 202, {**headers, "Preference-Applied": "respond-async"}
        run = run_synchronously(upload.stream.path, file_name)
        return {"id": run.id}


@bp.route("/<id:run_id>")
class BulkRunItemView(MethodView):
    """One run."""

    @bp.doc(operationId="getBulkRun")
    @bp.response(200, BulkRunDetailSchema)
    @bp.alt_response(404, message=NOT_FOUND)
    def get(self, run_id: str):
        """A run with its status, progress, every report row with its error, and skipped files."""
        run = read_one_or_404(RUN_BY_ID, run_id, NOT_FOUND)
        # Read after the run: one read as succeeded has every row (stored in the same commit).
        with read_connection() as connection:
            items = connection.execute(RUN_ITEMS, {"id": run["id"]}).all()
            skipped = connection.execute(RUN_SKIPPED_FILES, {"id": run["id"]}).mappings().all()
        rows = [{**report, "error": error} for report, error in items]
        return {**run, "items": rows, "skipped_files": skipped}

    @bp.doc(operationId="deleteBulkRun")
    @bp.response(204)
    @bp.alt_response(404, message=NOT_FOUND)
    def delete(self, run_id: str):
        """Delete a finished run with its rows; cancel a queued or running one.

        A cancelled run stops at its next study, its files are removed and it stays listed as
        ``cancelled``.
        """
        run = get_or_404(BulkRun, run_id, NOT_FOUND)
        # A run that ends between the read and the cancel is deleted like any finished run.
        if run.status not in ACTIVE or not cancel(run.id):
            db.session.delete(run)
            db.session.commit()
            remove_folder(run.id)


def finished_run_or_409(run_id: str) -> RowMapping:
    """The run's columns, if it has succeeded; else 409 (with Retry-After while it may still)."""
    run = read_one_or_404(RUN_BY_ID, run_id, NOT_FOUND)
    if run["status"] != SUCCEEDED:
        headers = {"Retry-After": str(POLL_AFTER_S)} if run["status"] in ACTIVE else {}
        abort_with_headers(409, message=NOT_FINISHED, headers=headers)
    return run


def stored_rows(run_id: uuid.UUID) -> Iterator[ReportRow]:
    """The run's report rows, in order, read a batch at a time."""
    return report_rows(report for report, _ in stream_rows(RUN_ITEMS, {"id": run_id}))


def stored_error_lines(run_id: uuid.UUID) -> Iterator[ErrorLine]:
    """The run's Failure rows, then its skipped files, read a batch at a time."""
    return error_lines(
        stream_rows(RUN_FAILURES, {"id": run_id}), stream_rows(RUN_SKIPPED_FILES, {"id": run_id})
    )


def report_file(name: str, mimetype: str, write: Callable[[BinaryIO], None]):
    """Send what ``write`` puts in a temp file: the report is never held whole in memory."""
    # An anonymous temp file: already gone from the disk, freed when the response closes it.
    handle = tempfile.TemporaryFile(dir=analysis_service().work_folder)  # noqa: SIM115
    try:
        write(handle)
        handle.flush()  # a full disk shows here at the latest (503, errors.disk_full)
    except BaseException:
        handle.close()  # frees what was written at once
        raise
    handle.seek(0)
    response = send_file(handle, mimetype=download_type(mimetype), max_age=0)
    response.headers["Content-Disposition"] = content_disposition(name)
    return response


def report_route(file: str, operation_id: str, content_type: str, description: str):
    """Route and document a report download of a run (404, and 409 until it has succeeded)."""

    def register(view):
        """``view`` routed and documented."""
        for decorate in (
            bp.alt_response(
                409,
                message=NOT_FINISHED,
                description="The run has not succeeded (Retry-After while it may still)",
            ),
            bp.alt_response(404, message=NOT_FOUND),
            bp.file_response(content_type, description),
            bp.doc(operationId=operation_id),
            bp.get(f"/<id:run_id>/{file}"),
        ):
            view = decorate(view)
        return view

    return register


@report_route(
    "report.xlsx", "getBulkReportXlsx", XLSX, "The report workbook: sheets Report, Errors and About"
)
def report_xlsx(run_id: str):
    """The report as XLSX: sheets Report, Errors and About."""
    run = finished_run_or_409(run_id)
    return report_file(
        f"bulk_report_{run['id']}.xlsx",
        XLSX,
        lambda handle: write_xlsx(
            handle, stored_rows(run["id"]), stored_error_lines(run["id"]), about_sheet(run)
        ),
    )


@report_route("report.csv", "getBulkReportCsv", CSV, "The Report sheet as CSV (UTF-8)")
def report_csv(run_id: str):
    """The report as CSV (UTF-8)."""
    run = finished_run_or_409(run_id)
    return report_file(
        f"bulk_report_{run['id']}.csv",
        CSV,  # werkzeug adds "; charset=utf-8"
        lambda handle: handle.writelines(
            line.encode() for line in csv_lines(stored_rows(run["id"]))
        ),
    )
