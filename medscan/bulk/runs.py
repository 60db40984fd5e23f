"""A processed archive as a run's rows (stored by a run, kept in memory by the CLI), and back."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from medscan.analyzer.model import Model
from medscan.analyzer.report import FAILURE, SUCCESS, ReportRow
from medscan.bulk.report_files import SKIPPED, ErrorLine
from medscan.bulk.studies import BulkResult
from medscan.models import utcnow


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


def finished_run(
    result: BulkResult, *, file_name: str, created_at: datetime, model: Model, threshold: float
) -> dict[str, Any]:
    """The ``bulk_runs`` columns a report needs of a run that made ``result``, finished now."""
    return {
        "id": uuid.uuid4(),
        "file_name": file_name,
        "created_at": created_at,
        "finished_at": utcnow(),
        "model_name": model.name,
        "model_version": model.version,
        "threshold": threshold,
        **result_counts(result),
    }


def about_sheet(run: Mapping[str, Any]) -> dict:
    """The About sheet of a run's ``bulk_runs`` columns: which run, which archive, which model."""
    return {
        "run_id": str(run["id"]),
        "file_name": run["file_name"],
        "created_at": run["created_at"],
        "finished_at": run["finished_at"],
        "studies": run["studies"],
        "succeeded": run["succeeded"],
        "failed": run["failed"],
        "skipped": run["skipped"],
        "model": run["model_name"],
        "model_version": run["model_version"],
        "threshold": run["threshold"],
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
