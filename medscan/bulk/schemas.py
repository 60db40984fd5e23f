"""Bulk run response schemas."""

from __future__ import annotations

import marshmallow as ma

from medscan.paging import PageArgsSchema, page_schema
from medscan.schemas import FilePart, Timestamp, report_fields


class BulkUploadSchema(ma.Schema):
    """The archive: a ZIP of DICOM studies, folders of slices and nested study ZIPs."""

    file = FilePart(required=True)


class ModelInfoSchema(ma.Schema):
    """Which model and threshold produced a report."""

    name = ma.fields.String(required=True)
    version = ma.fields.String(required=True)
    threshold = ma.fields.Float(required=True)


class BulkRunSchema(ma.Schema):
    """A run without its rows."""

    id = ma.fields.UUID(required=True)
    file_name = ma.fields.String(required=True)
    created_at = Timestamp(required=True)
    finished_at = Timestamp(required=True)
    studies = ma.fields.Integer(required=True, metadata={"description": "report rows"})
    succeeded = ma.fields.Integer(required=True)
    failed = ma.fields.Integer(required=True)
    skipped = ma.fields.Integer(
        required=True, metadata={"description": "files that made no row (listed in Errors)"}
    )
    model = ma.fields.Nested(ModelInfoSchema, required=True)


BulkItemSchema = ma.Schema.from_dict(
    {
        **report_fields(),
        "error": ma.fields.String(
            required=True, allow_none=True, metadata={"description": "null on Success"}
        ),
    },
    name="BulkRunItem",
)


class BulkRunDetailSchema(BulkRunSchema):
    """A run with its report rows, in report order."""

    items = ma.fields.List(ma.fields.Nested(BulkItemSchema), required=True, attribute="rows")


BulkRunPageSchema = page_schema(BulkRunSchema, "BulkRunPage")
BulkRunQuerySchema = PageArgsSchema
