"""Scan request and response schemas."""

from __future__ import annotations

import marshmallow as ma

from medscan.analyzer.headers import NO_PIXEL_DATA
from medscan.analyzer.preview import (
    DEFAULT_WINDOW,
    FEWER_IMAGES,
    INCOMPLETE_PIXEL_DATA,
    LOCALIZER,
    TIE_LOST,
    WINDOWS,
)
from medscan.paging import PageArgsSchema, page_schema
from medscan.patients.schemas import DESCRIPTION_LENGTH
from medscan.schemas import (
    EXAMPLE_ID,
    EXAMPLE_TIME,
    FilePart,
    InputSchema,
    ReportSchema,
    StorableString,
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
    description = StorableString(
        validate=DESCRIPTION_LENGTH, metadata={"example": "CT thorax, low dose"}
    )


class ScanUpdateSchema(InputSchema):
    """``PUT`` body: the description only."""

    READ_ONLY_FIELDS = (*InputSchema.READ_ONLY_FIELDS, "patient_id", "file_name")

    description = StorableString(
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


class SeriesItemSchema(ma.Schema):
    """One series of a scan's analysed study, and whether the analysis uses it."""

    series_uid = ma.fields.String(
        required=True,
        metadata={
            "description": '"" when unknown',
            "example": "1.2.276.0.7230010.3.1.3.2344313775.14992.1458058359.7",
        },
    )
    series_number = ma.fields.Integer(required=True, allow_none=True, metadata={"example": 3})
    modality = ma.fields.String(
        required=True, metadata={"description": '"" when unknown', "example": "CT"}
    )
    description = ma.fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "SeriesDescription", "example": "Chest 1.0 B70f"},
    )
    images = ma.fields.Integer(
        required=True,
        metadata={
            "description": "images as the series choice counts them: frames of the complete "
            "instances (a 300-frame Enhanced CT instance counts 300), localizers left aside "
            "unless the series holds nothing else; 0 without usable pixel data"
        },
    )
    rows = ma.fields.Integer(required=True, allow_none=True)
    columns = ma.fields.Integer(required=True, allow_none=True)
    spacing = ma.fields.List(
        ma.fields.Float(),
        required=True,
        allow_none=True,
        validate=ma.validate.Length(3, 3),
        metadata={
            "description": "[slice, row, column] in mm as the model gets it (slice spacing "
            "from the positions), null where the geometry does not give it"
        },
    )
    chosen = ma.fields.Boolean(
        required=True, metadata={"description": "the series the analysis and the preview use"}
    )
    reason = ma.fields.String(
        required=True,
        allow_none=True,
        metadata={
            "description": "why the series is not chosen (null for the chosen one): "
            f"`{NO_PIXEL_DATA}`, `{INCOMPLETE_PIXEL_DATA}`, `{LOCALIZER}`, `{FEWER_IMAGES}`, "
            f"or `{TIE_LOST}`",
            "example": None,
        },
    )


class SeriesListSchema(ma.Schema):
    """Every series of the scan (of its analysed study when it holds several)."""

    items = ma.fields.List(ma.fields.Nested(SeriesItemSchema), required=True)


MAX_INDEX = 2**31 - 1
WINDOW_TEXT = {
    window.name: f"width {window.width:g}, level {window.level:g} HU ({window.description})"
    for window in WINDOWS.values()
}


class PreviewQuerySchema(ma.Schema):
    """Which image of the chosen series, in which window."""

    window = ma.fields.String(
        load_default=DEFAULT_WINDOW,
        validate=ma.validate.OneOf(list(WINDOWS)),
        metadata={
            "description": f"display window preset (default `{DEFAULT_WINDOW}`): "
            + "; ".join(f"`{name}` = {text}" for name, text in WINDOW_TEXT.items()),
            "x-enumDescriptions": WINDOW_TEXT,
        },
    )
    index = ma.fields.Integer(
        strict=False,
        validate=ma.validate.Range(0, MAX_INDEX),
        metadata={
            "description": "image index in slice order (0 = first along the slice normal), "
            "default the middle image; at or past the series' image count → 400"
        },
    )
