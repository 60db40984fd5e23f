"""Scan request and response schemas."""

from __future__ import annotations

import marshmallow as ma

from medscan.paging import PageArgsSchema, page_schema
from medscan.patients.schemas import DESCRIPTION_LENGTH
from medscan.schemas import (
    EXAMPLE_ID,
    EXAMPLE_TIME,
    FilePart,
    InputSchema,
    ReportSchema,
    Text,
    Timestamp,
)

EXAMPLE_PATIENT_ID = "5d6a8f1c-2b47-4e0a-8c3d-9e1f7a2b4c60"


class ScanSchema(ma.Schema):
    """A scan as the API returns it."""

    id = ma.fields.UUID(required=True, metadata={"example": EXAMPLE_ID})
    patient_id = ma.fields.UUID(required=True, metadata={"example": EXAMPLE_PATIENT_ID})
    description = ma.fields.String(
        required=True, allow_none=True, metadata={"example": "CT thorax, low dose"}
    )
    file_name = ma.fields.String(
        required=True,
        metadata={"description": "the client's file name", "example": "Семёнов КТ.zip"},
    )
    created_at = Timestamp(required=True, metadata={"example": EXAMPLE_TIME})
    updated_at = Timestamp(required=True, metadata={"example": EXAMPLE_TIME})


ScanPageSchema = page_schema(ScanSchema, "ScanPage")


class ScanQuerySchema(PageArgsSchema):
    """List arguments: paging plus an optional patient filter."""

    patient_id = ma.fields.UUID(metadata={"description": "Only this patient's scans"})


class ScanUploadSchema(ma.Schema):
    """A scan upload: the patient, the file (a DICOM file or a ZIP of one series), a note."""

    patient_id = ma.fields.UUID(required=True, metadata={"example": EXAMPLE_PATIENT_ID})
    file = FilePart(required=True, metadata={"description": "DICOM (Part 10 or raw) or a ZIP"})
    # A form field cannot be null: leave it out for no description (a nullable field would make
    # generated clients send the text "None").
    description = Text(validate=DESCRIPTION_LENGTH, metadata={"example": "CT thorax, low dose"})


class ScanUpdateSchema(InputSchema):
    """``PUT`` body: the description only."""

    READ_ONLY_FIELDS = (*InputSchema.READ_ONLY_FIELDS, "patient_id", "file_name")

    description = Text(
        required=True,
        allow_none=True,
        validate=DESCRIPTION_LENGTH,
        metadata={"example": "CT thorax, contrast"},
    )


class ResultSchema(ma.Schema):
    """The thresholded model result of a successful analysis."""

    has_pathology = ma.fields.Boolean(required=True, metadata={"example": True})
    label = ma.fields.String(
        required=True, metadata={"description": 'finding, or "normal"', "example": "pathology"}
    )
    confidence = ma.fields.Float(
        required=True,
        validate=ma.validate.Range(0, 1),
        metadata={
            "description": "the probability when has_pathology, else 1 - probability",
            "example": 0.83,
        },
    )
    extras = ma.fields.Dict(
        required=True,
        metadata={
            "description": "model, model_version, threshold, and the model's own extras; "
            'left_out: [{"path", "reason"}] lists the instances left out of the analysed study '
            "(duplicates, incomplete pixel data; paths inside the ZIP for a ZIP scan), absent "
            "when none was left out",
            "example": {
                "model": "stub",
                "model_version": "1",
                "threshold": 0.5,
                "note": "stub output",
                "left_out": [
                    {"path": "study/IM0002.dcm", "reason": "duplicate of study/IM0001.dcm"}
                ],
            },
        },
    )


class AnalyzeResponseSchema(ma.Schema):
    """``ok``, ``result`` (null on Failure), ``report``, and ``error`` when ``ok`` is false."""

    ok = ma.fields.Boolean(required=True, metadata={"example": True})
    result = ma.fields.Nested(
        ResultSchema, required=True, allow_none=True, metadata={"description": "null on Failure"}
    )
    report = ma.fields.Nested(ReportSchema, required=True)
    error = ma.fields.String(
        metadata={
            "description": "why the scan could not be analysed (only when ok is false)",
            "example": "no image series",
        }
    )


class StoredReportSchema(ma.Schema):
    """The last report of a scan and when it was made."""

    report = ma.fields.Nested(ReportSchema, required=True)
    processed_at = Timestamp(required=True, metadata={"example": EXAMPLE_TIME})
