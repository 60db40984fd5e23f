"""Bulk runs API: ``/api/bulk-runs``: a ZIP of studies in, XLSX and CSV triage reports out."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from flask import abort, current_app, request, send_file
from flask.views import MethodView
from sqlalchemy import select
from werkzeug.exceptions import RequestEntityTooLarge

from medscan.analysis import current_model, unpack_limits
from medscan.analyzer.report import ReportRow
from medscan.api import Blueprint, api, content_disposition, download_type, get_or_404
from medscan.bulk.archive import sweep_stale_work_dirs, work_dir
from medscan.bulk.report_files import ErrorLine, csv_lines, write_xlsx
from medscan.bulk.runs import about, build_run, error_lines, report_rows
from medscan.bulk.schemas import (
    BulkRunDetailSchema,
    BulkRunPageSchema,
    BulkRunQuerySchema,
    BulkUploadSchema,
)
from medscan.bulk.studies import BulkResult, process_archive
from medscan.extensions import db
from medscan.models import BulkRun, BulkRunItem, BulkRunSkippedFile, utcnow
from medscan.paging import PageQuery
from medscan.schemas import IdSchema
from medscan.uploads import client_file_name, receive_uploads_into

bp = Blueprint("bulk", __name__, url_prefix="/api/bulk-runs", description="Bulk runs")

NOT_FOUND = "Run not found"
ONLY_ZIP = "Only .zip is accepted"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV = "text/csv"
ALL_RUNS = PageQuery(list(BulkRun.__table__.c))


@bp.before_request
def stream_archive_uploads() -> None:
    """Archives spool into the work folder and stop at ``MEDSCAN_MAX_BULK_MB``."""
    if request.endpoint == "bulk.BulkRunCollection" and request.method == "POST":
        receive_uploads_into(
            current_app.config["MEDSCAN_WORK_DIR"], current_app.config["MEDSCAN_MAX_BULK_MB"]
        )


@bp.errorhandler(RequestEntityTooLarge)
def archive_too_large(error: RequestEntityTooLarge):
    """413 for a body over the limit, naming the limit."""
    limit = current_app.config["MEDSCAN_MAX_BULK_MB"]
    return api.handle_http_exception(RequestEntityTooLarge(f"ZIP too large. Max {limit} MB"))


def run_archive(archive: Path, file_name: str) -> BulkResult:
    """Unpack and analyse ``archive`` in a work folder that is removed whatever happens."""
    work_base = Path(current_app.config["MEDSCAN_WORK_DIR"])
    sweep_stale_work_dirs(work_base)
    started = time.perf_counter()

    def log_progress(done: int, total: int) -> None:
        elapsed = time.perf_counter() - started
        # File names can carry patient names: lines are tied to the run by the request id.
        current_app.logger.info("bulk run: study %d/%d, %.1f s", done, total, elapsed)

    with work_dir(work_base) as folder:
        return process_archive(
            archive,
            folder,
            archive_name=file_name,
            limits=unpack_limits(),
            model=current_model(),
            threshold=current_app.config["MEDSCAN_THRESHOLD"],
            progress=log_progress,
        )


@bp.route("")
class BulkRunCollection(MethodView):
    """Bulk runs."""

    @bp.doc(operationId="listBulkRuns")
    @bp.arguments(BulkRunQuerySchema(), location="query")
    @bp.response(200, BulkRunPageSchema)
    def get(self, args: dict):
        """List runs (without their rows), newest first."""
        page = ALL_RUNS.fetch(args["limit"], args["offset"])
        # Unsaved model objects dump ``model`` ({name, version, threshold}) as a run does.
        return {**page, "items": [BulkRun(**run) for run in page["items"]]}

    @bp.doc(operationId="createBulkRun")
    @bp.arguments(BulkUploadSchema(), location="multipart")
    @bp.response(201, IdSchema)
    @bp.alt_response(
        413,
        message="ZIP too large. Max 4096 MB",
        description="Body over MEDSCAN_MAX_BULK_MB, or over an unpack limit",
    )
    @bp.alt_response(
        503,
        message="Not enough disk space",
        description="Not enough disk space to unpack (see Retry-After)",
    )
    def post(self, files: dict):
        """Upload a ZIP of studies; answers when every study has been analysed."""
        upload = files["file"]
        file_name = client_file_name(upload)
        if not file_name.lower().endswith(".zip"):
            abort(400, ONLY_ZIP)
        created_at = utcnow()
        result = run_archive(upload.stream.path, file_name)
        run = build_run(
            result,
            file_name=file_name,
            created_at=created_at,
            model=current_model(),
            threshold=current_app.config["MEDSCAN_THRESHOLD"],
        )
        db.session.add(run)
        db.session.commit()
        current_app.logger.info(
            "bulk run %s: %d studies (%d failed), %d skipped files",
            run.id,
            run.studies,
            run.failed,
            run.skipped,
        )
        return {"id": run.id}


@bp.get("/<id:run_id>")
@bp.doc(operationId="getBulkRun")
@bp.response(200, BulkRunDetailSchema)
@bp.alt_response(404, message=NOT_FOUND)
def get_run(run_id: str):
    """A run with every report row and its error."""
    return get_or_404(BulkRun, run_id, NOT_FOUND)


def stream(query) -> Iterator:
    """Rows of ``query`` fetched a batch at a time, so a large run never sits in memory."""
    return db.session.execute(query.execution_options(yield_per=1000))


def stored_rows(run: BulkRun) -> Iterator[ReportRow]:
    """The run's report rows, in order."""
    query = select(BulkRunItem.report).where(BulkRunItem.run_id == run.id)
    return report_rows(report for (report,) in stream(query.order_by(BulkRunItem.position)))


def stored_error_lines(run: BulkRun) -> Iterator[ErrorLine]:
    """The run's Failure rows, then its skipped files."""
    failures = select(BulkRunItem.report, BulkRunItem.error).where(
        BulkRunItem.run_id == run.id, BulkRunItem.error.is_not(None)
    )
    skipped = select(BulkRunSkippedFile.path, BulkRunSkippedFile.reason).where(
        BulkRunSkippedFile.run_id == run.id
    )
    return error_lines(
        stream(failures.order_by(BulkRunItem.position)),
        stream(skipped.order_by(BulkRunSkippedFile.position)),
    )


def report_file(name: str, mimetype: str, write: Callable[[BinaryIO], None]):
    """Send what ``write`` puts in a temp file: the report is never held whole in memory."""
    # An anonymous temp file: already gone from the disk, freed when the response closes it.
    handle = tempfile.TemporaryFile(dir=current_app.config["MEDSCAN_WORK_DIR"])  # noqa: SIM115
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


@bp.get("/<id:run_id>/report.xlsx")
@bp.doc(operationId="getBulkReportXlsx")
@bp.file_response(XLSX, "The report workbook: sheets Report, Errors and About")
@bp.alt_response(404, message=NOT_FOUND)
def report_xlsx(run_id: str):
    """The report as XLSX: sheets Report, Errors and About."""
    run = get_or_404(BulkRun, run_id, NOT_FOUND)
    return report_file(
        f"bulk_report_{run.id}.xlsx",
        XLSX,
        lambda handle: write_xlsx(handle, stored_rows(run), stored_error_lines(run), about(run)),
    )


@bp.get("/<id:run_id>/report.csv")
@bp.doc(operationId="getBulkReportCsv")
@bp.file_response(CSV, "The Report sheet as CSV (UTF-8)")
@bp.alt_response(404, message=NOT_FOUND)
def report_csv(run_id: str):
    """The report as CSV (UTF-8)."""
    run = get_or_404(BulkRun, run_id, NOT_FOUND)
    return report_file(
        f"bulk_report_{run.id}.csv",
        CSV,  # werkzeug adds "; charset=utf-8"
        lambda handle: handle.writelines(line.encode() for line in csv_lines(stored_rows(run))),
    )
