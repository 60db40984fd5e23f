"""Patient request and response schemas."""

from __future__ import annotations

import marshmallow as ma

from medscan.paging import PageArgsSchema, page_schema
from medscan.schemas import InputSchema, Text, Timestamp

NAME_LENGTH = ma.validate.Length(1, 100)
DESCRIPTION_LENGTH = ma.validate.Length(max=10_000)


class PatientSchema(ma.Schema):
    """A patient as the API returns it."""

    id = ma.fields.UUID(required=True)
    first_name = ma.fields.String(required=True)
    last_name = ma.fields.String(required=True)
    description = ma.fields.String(required=True, allow_none=True)
    created_at = Timestamp(required=True)
    updated_at = Timestamp(required=True)


PatientPageSchema = page_schema(PatientSchema, "PatientPage")


class PatientCreateSchema(InputSchema):
    """``POST`` body: both names required, description optional."""

    first_name = Text(strip=True, required=True, validate=NAME_LENGTH)
    last_name = Text(strip=True, required=True, validate=NAME_LENGTH)
    description = Text(allow_none=True, validate=DESCRIPTION_LENGTH)


class PatientUpdateSchema(InputSchema):
    """``PUT`` body: any non-empty subset; names cannot be null or blank."""

    first_name = Text(strip=True, validate=NAME_LENGTH)
    last_name = Text(strip=True, validate=NAME_LENGTH)
    description = Text(allow_none=True, validate=DESCRIPTION_LENGTH)

    @ma.validates_schema
    def require_a_field(self, data: dict, **kwargs) -> None:
        """An update must change something."""
        if not data:
            raise ma.ValidationError("Provide at least one of first_name, last_name, description.")


class PatientQuerySchema(PageArgsSchema):
    """List arguments: paging plus ``q``, words matched against first or last name."""

    # Two names of at most 100 characters each: a longer query can match nothing, and very long
    # ones only make the trigram search expensive.
    q = Text(
        load_default="",
        validate=ma.validate.Length(max=500),
        metadata={
            "description": (
                "Case-insensitive substring search on first or last name; every "
                "whitespace-separated word must match; `ё` and `е` are the same letter; "
                "`%` and `_` match literally."
            )
        },
    )
