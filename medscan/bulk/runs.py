"""A processed archive as rows: counts and child rows (stored by a run), or a ``BulkRun`` (CLI)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime

from medscan.analyzer.model import Model
from medscan.analyzer.report import FAILURE, SUCCESS, ReportRow
from medscan.bulk.report_files import SKIPPED, ErrorLine
from medscan.bulk.studies import BulkResult
from medscan.models import BulkRun, BulkRunItem, BulkRunSkippedFile, utcnow


def result_counts(result: BulkResult) -> dict[str, int]:
    """A result's ``studies``, ``succeeded``, ``failed`` and ``skipped`` counts."""
    statuses = [row.report.processing_status for row in result.rows]
    return {
        "studies": len(result.rows),
        "succeeded": statuses.count(SUCCESS),
        "failed": statuses.count(FAILURE),
        "skipped": len(result.skipped),
    }


def child_rows(run_id: uuid.UUID, result: BulkResult) -> tuple[list[dict], list[dict]]:
    """The result's ``bulk_run_items`` and ``bulk_run_skipped_files`` rows, in order."""
    items = [
        {"run_id": run_id, "position": n, "report": row.report.as_dict(), "error": row.error}
        for n, row in enumerate(result.rows)
    ]
    skipped = [
        {"run_id": run_id, "position": n, "path": skip.path, "reason": skip.reason}
        for n, skip in enumerate(result.skipped)
    ]
    return items, skipped


def build_run(
    result: BulkResult, *, file_name: str, created_at: datetime, model: Model, threshold: float
) -> BulkRun:
    """A new run holding the result's rows and skipped files, finished now (kept in memory)."""
    run_id = uuid.uuid4()
    items, skipped = child_rows(run_id, result)
    return BulkRun(
        id=run_id,
        file_name=file_name,
        created_at=created_at,
        finished_at=utcnow(),
        status="succeeded",
        model_name=model.name,
        model_version=model.version,
        threshold=threshold,
        items=[BulkRunItem(**item) for item in items],
        skipped_files=[BulkRunSkippedFile(**skip) for skip in skipped],
        **result_counts(result),
    )


def about_sheet(run: BulkRun) -> dict:
    """The About sheet: which run, which archive, which model."""
    return {
        "run_id": str(run.id),
        "file_name": run.file_name,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
        "studies": run.studies,
        "succeeded": run.succeeded,
        "failed": run.failed,
        "skipped": run.skipped,
        "model": run.model_name,
        "model_version": run.model_version,
        "threshold": run.threshold,
    }


def error_lines(
    failures: Iterable[tuple[dict, str]], skipped: Iterable[tuple[str, str]]
) -> Iterator[ErrorLine]:
    """The Errors sheet: Failure rows (report, error), then skipped files (path, reason)."""
    for report, error in failures:
        yield ErrorLine(report["path_to_study"], FAILURE, error)
    for path, reason in skipped:
        yield ErrorLine(path, SKIPPED, reason)


def report_rows(reports: Iterable[dict]) -> Iterator[ReportRow]:
    """Stored report objects back as ReportRows."""
    return (ReportRow.from_dict(report) for report in reports)
