"""Schema pieces shared by every resource: timestamps, text fields, input rules."""

from __future__ import annotations

import typing
from datetime import datetime
from typing import Any

import marshmallow as ma
from flask_smorest.fields import Upload
from werkzeug.datastructures import FileStorage

from medscan.analyzer.report import FAILURE, SUCCESS, ReportRow
from medscan.models import iso_utc

# Examples shown by Swagger UI and generated clients' docs: realistic values, never real people.
EXAMPLE_ID = "0b7c9e5e-3f0e-4c8a-9a51-6f2d1c4b8e21"
EXAMPLE_TIME = "2025-09-20T10:00:00Z"


class Timestamp(ma.fields.DateTime):
    """UTC, ISO 8601 with a ``Z`` suffix."""

    def _serialize(self, value: datetime | None, attr, obj, **kwargs) -> str | None:
        return None if value is None else iso_utc(value)


class StorableString(ma.fields.String):
    """A string that PostgreSQL can store (no NUL), optionally stripped of outer white space."""

    def __init__(self, *, strip: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.strip = strip

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in text:
            raise ma.ValidationError("Must not contain NUL characters.")
        return text.strip() if self.strip else text


class FilePart(Upload):
    """A multipart file part; a plain form field of that name (no ``filename``) is refused."""

    def _deserialize(self, value, attr, data, **kwargs) -> FileStorage:
        if not isinstance(value, FileStorage):
            raise ma.ValidationError("Must be a file part (with a filename), not a form field.")
        return value


class InputSchema(ma.Schema):
    """A request body: unknown fields are errors, read-only fields sent back are ignored."""

    READ_ONLY_FIELDS: tuple[str, ...] = ("id", "created_at", "updated_at")

    class Meta:
        unknown = ma.RAISE

    @ma.pre_load
    def drop_read_only_fields(self, data: Any, **kwargs) -> Any:
        """Let clients send back what they fetched: read-only fields are dropped, not refused."""
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if key not in self.READ_ONLY_FIELDS}
        return data


class IdSchema(ma.Schema):
    """``{"id": uuid}``, the answer to a create."""

    id = ma.fields.UUID(required=True, metadata={"example": EXAMPLE_ID})


# What the document says of each report key beyond its type: its range and an example.
REPORT_KEY_DOCS: dict[str, dict[str, Any]] = {
    "path_to_study": {"metadata": {"example": "batch1/norma_anon.zip"}},
    "study_uid": {"metadata": {"example": "1.2.276.0.7230010.3.1.2.2344313775.14992.1458058359.6"}},
    "series_uid": {
        "metadata": {"example": "1.2.276.0.7230010.3.1.3.2344313775.14992.1458058359.7"}
    },
    "probability_of_pathology": {
        "validate": ma.validate.Range(0, 1),
        "metadata": {"example": 0.83, "description": "null on Failure"},
    },
    "pathology": {
        "validate": ma.validate.Range(0, 1),
        "metadata": {
            "example": 1,
            "description": "1 iff probability >= threshold; null on Failure",
        },
    },
    "processing_status": {"validate": ma.validate.OneOf([SUCCESS, FAILURE])},
    "time_of_processing": {
        "validate": ma.validate.Range(min=0),
        "metadata": {"example": 1.42, "description": "seconds"},
    },
}


def _report_field(name: str, annotation: Any) -> ma.fields.Field:
    """The marshmallow field for one ``ReportRow`` attribute type."""
    allow_none = type(None) in typing.get_args(annotation)
    base = next(t for t in (typing.get_args(annotation) or (annotation,)) if t is not type(None))
    field_class = {str: ma.fields.String, float: ma.fields.Float, int: ma.fields.Integer}[base]
    return field_class(required=True, allow_none=allow_none, **REPORT_KEY_DOCS[name])


def report_fields() -> dict[str, ma.fields.Field]:
    """The seven report keys, in order, straight from the analyzer's ReportRow (defined there)."""
    hints = typing.get_type_hints(ReportRow)
    return {name: _report_field(name, kind) for name, kind in hints.items()}


ReportSchema = ma.Schema.from_dict(report_fields(), name="Report")
