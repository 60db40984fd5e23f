"""Bulk run response schemas."""

from __future__ import annotations

import marshmallow as ma

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


class BulkRunSchema(ma.Schema):
    """A run without its rows."""

    id = ma.fields.UUID(required=True, metadata={"example": EXAMPLE_ID})
    file_name = ma.fields.String(required=True, metadata={"example": "batch_2025-09.zip"})
    created_at = Timestamp(required=True, metadata={"example": EXAMPLE_TIME})
    finished_at = Timestamp(required=True, metadata={"example": "2025-09-20T10:03:12Z"})
    studies = ma.fields.Integer(
        required=True, metadata={"description": "report rows", "example": 12}
    )
    succeeded = ma.fields.Integer(required=True, metadata={"example": 11})
    failed = ma.fields.Integer(required=True, metadata={"example": 1})
    skipped = ma.fields.Integer(
        required=True,
        metadata={"description": "files that made no row (listed in Errors)", "example": 2},
    )
    model = ma.fields.Nested(ModelInfoSchema, required=True)


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

    items = ma.fields.List(ma.fields.Nested(BulkItemSchema), required=True, attribute="rows")


BulkRunPageSchema = page_schema(BulkRunSchema, "BulkRunPage")
BulkRunQuerySchema = PageArgsSchema
