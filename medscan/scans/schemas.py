"""Scan request and response schemas."""

from __future__ import annotations

import marshmallow as ma

from medscan.paging import PageArgsSchema, page_schema
from medscan.patients.schemas import DESCRIPTION_LENGTH
from medscan.schemas import FilePart, InputSchema, ReportSchema, Text, Timestamp


class ScanSchema(ma.Schema):
    """A scan as the API returns it."""

    id = ma.fields.UUID(required=True)
    patient_id = ma.fields.UUID(required=True)
    description = ma.fields.String(required=True, allow_none=True)
    file_name = ma.fields.String(required=True)
    created_at = Timestamp(required=True)
    updated_at = Timestamp(required=True)


ScanPageSchema = page_schema(ScanSchema, "ScanPage")


class ScanQuerySchema(PageArgsSchema):
    """List arguments: paging plus an optional patient filter."""

    patient_id = ma.fields.UUID(metadata={"description": "Only this patient's scans"})


class ScanUploadSchema(ma.Schema):
    """A scan upload: the patient, the file (a DICOM file or a ZIP of one series), a note."""

    patient_id = ma.fields.UUID(required=True)
    file = FilePart(required=True, metadata={"description": "DICOM (Part 10 or raw) or a ZIP"})
    description = Text(allow_none=True, validate=DESCRIPTION_LENGTH)


class ScanUpdateSchema(InputSchema):
    """``PUT`` body: the description only."""

    READ_ONLY_FIELDS = (*InputSchema.READ_ONLY_FIELDS, "patient_id", "file_name")

    description = Text(required=True, allow_none=True, validate=DESCRIPTION_LENGTH)


class ResultSchema(ma.Schema):
    """The thresholded model result of a successful analysis."""

    has_pathology = ma.fields.Boolean(required=True)
    label = ma.fields.String(required=True, metadata={"description": 'finding, or "normal"'})
    confidence = ma.fields.Float(required=True)
    extras = ma.fields.Dict(
        required=True,
        metadata={
            "description": "model, model_version, threshold, and the model's own extras; "
            'left_out: [{"path", "reason"}] lists the instances left out of the analysed study '
            "(duplicates, incomplete pixel data; paths inside the ZIP for a ZIP scan), absent "
            "when none was left out"
        },
    )


class AnalyzeResponseSchema(ma.Schema):
    """``ok``, ``result`` (null on Failure), ``report``, and ``error`` when ``ok`` is false."""

    ok = ma.fields.Boolean(required=True)
    result = ma.fields.Nested(ResultSchema, required=True, allow_none=True)
    report = ma.fields.Nested(ReportSchema, required=True)
    error = ma.fields.String(metadata={"description": "why the scan could not be analysed"})


class StoredReportSchema(ma.Schema):
    """The last report of a scan and when it was made."""

    report = ma.fields.Nested(ReportSchema, required=True)
    processed_at = Timestamp(required=True)
