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


class SeriesItemSchema(ma.Schema):
    """One series of a scan's analysed study, and whether the analysis uses it."""

    series_uid = ma.fields.String(required=True, metadata={"description": '"" when unknown'})
    series_number = ma.fields.Integer(required=True, allow_none=True)
    modality = ma.fields.String(required=True, metadata={"description": '"" when unknown'})
    description = ma.fields.String(
        required=True, allow_none=True, metadata={"description": "SeriesDescription"}
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
            f"or `{TIE_LOST}`"
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
