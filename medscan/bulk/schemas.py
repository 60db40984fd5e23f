"""Bulk run request and response schemas."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import marshmallow as ma

from medscan.bulk.tracking import STATUSES
from medscan.logs import CLIENT_REQUEST_ID
from medscan.paging import PageArgsSchema, page_schema
from medscan.schemas import EXAMPLE_ID, EXAMPLE_TIME, FilePart, Timestamp, report_fields


class BulkUploadSchema(ma.Schema):
    """The archive: a ZIP of DICOM studies, folders of slices and nested study ZIPs."""

    file = FilePart(required=True, metadata={"description": "the archive, a .zip"})


class ModelInfoSchema(ma.Schema):
    """Which model and threshold produced a report."""

    name = ma.fields.String(required=True, metadata={"example": "stub"})
    version = ma.fields.String(required=True, metadata={"example": "1"})
    threshold = ma.fields.Float(required=True, metadata={"example": 0.5})


class ProgressSchema(ma.Schema):
    """Studies analysed so far, of those found (``total`` null until the archive is unpacked)."""

    done = ma.fields.Integer(required=True)
    total = ma.fields.Integer(required=True, allow_none=True)


class BulkRunSchema(ma.Schema):
    """A run without its rows, dumped from its ``bulk_runs`` columns."""

    id = ma.fields.UUID(required=True, metadata={"example": EXAMPLE_ID})
    file_name = ma.fields.String(required=True, metadata={"example": "batch_2025-09.zip"})
    status = ma.fields.String(required=True, validate=ma.validate.OneOf(STATUSES))
    progress = ma.fields.Nested(ProgressSchema, required=True)
    error = ma.fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "why a failed run failed", "example": None},
    )
    request_id = ma.fields.String(
        required=True,
        allow_none=True,
        metadata={
            "description": "the X-Request-ID of the request that posted the run",
            "example": "batch-2025-09-20",
        },
    )
    created_at = Timestamp(required=True, metadata={"example": EXAMPLE_TIME})
    finished_at = Timestamp(
        required=True,
        allow_none=True,
        metadata={"description": "null while queued or running", "example": "2025-09-20T10:03:12Z"},
    )
    studies = ma.fields.Integer(
        required=True, metadata={"description": "report rows", "example": 12}
    )
    succeeded = ma.fields.Integer(required=True, metadata={"example": 11})
    failed = ma.fields.Integer(required=True, metadata={"example": 1})
    skipped_count = ma.fields.Integer(
        required=True,
        attribute="skipped",
        metadata={
            "description": "files that made no row (listed in Errors and in `skipped`)",
            "example": 2,
        },
    )
    model = ma.fields.Nested(
        ModelInfoSchema,
        required=True,
        allow_none=True,
        metadata={"description": "null until the run has started"},
    )

    @ma.pre_dump
    def nest_columns(self, run: Mapping[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Nest the ``progress_*`` columns as ``progress`` and the model's as ``model``."""
        model = None
        if run["model_name"] is not None:
            model = {
                "name": run["model_name"],
                "version": run["model_version"],
                "threshold": run["threshold"],
            }
        progress = {"done": run["progress_done"], "total": run["progress_total"]}
        return {**run, "progress": progress, "model": model}


class SkippedFileSchema(ma.Schema):
    """A file of the archive that made no row, and why (the Errors sheet's Skipped lines)."""

    path = ma.fields.String(required=True, metadata={"example": "batch1/notes.txt"})
    reason = ma.fields.String(required=True, metadata={"example": "not DICOM"})


BulkItemSchema = ma.Schema.from_dict(
    {
        **report_fields(),
        "error": ma.fields.String(
            required=True,
            allow_none=True,
            metadata={"description": "null on Success", "example": None},
        ),
    },
    name="BulkRunItem",
)


class BulkRunDetailSchema(BulkRunSchema):
    """A run with its report rows, in report order."""

    items = ma.fields.List(ma.fields.Nested(BulkItemSchema), required=True)
    skipped = ma.fields.List(
        ma.fields.Nested(SkippedFileSchema), required=True, attribute="skipped_files"
    )


BulkRunPageSchema = page_schema(BulkRunSchema, "BulkRunPage")


class BulkRunQuerySchema(PageArgsSchema):
    """Paging, and optionally the ``X-Request-ID`` a client posted its run with."""

    request_id = ma.fields.String(
        load_default=None,
        validate=ma.validate.Regexp(f"^{CLIENT_REQUEST_ID.pattern}$"),
        metadata={"description": "only runs posted with this X-Request-ID"},
    )
