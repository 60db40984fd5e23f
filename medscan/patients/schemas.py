"""Patient request and response schemas."""

from __future__ import annotations

import marshmallow as ma

from medscan.paging import PageArgsSchema, page_schema
from medscan.schemas import EXAMPLE_ID, EXAMPLE_TIME, InputSchema, StorableString, Timestamp

NAME_LENGTH = ma.validate.Length(1, 100)
DESCRIPTION_LENGTH = ma.validate.Length(max=10_000)


class PatientSchema(ma.Schema):
    """A patient as the API returns it."""

    id = ma.fields.UUID(required=True, metadata={"example": EXAMPLE_ID})
    first_name = ma.fields.String(required=True, metadata={"example": "Иван"})
    last_name = ma.fields.String(required=True, metadata={"example": "Семёнов"})
    description = ma.fields.String(
        required=True, allow_none=True, metadata={"example": "follow-up after pneumonia"}
    )
    created_at = Timestamp(required=True, metadata={"example": EXAMPLE_TIME})
    updated_at = Timestamp(required=True, metadata={"example": EXAMPLE_TIME})


PatientPageSchema = page_schema(PatientSchema, "PatientPage")


class PatientCreateSchema(InputSchema):
    """``POST`` body: both names required, description optional."""

    first_name = StorableString(
        strip=True, required=True, validate=NAME_LENGTH, metadata={"example": "Иван"}
    )
    last_name = StorableString(
        strip=True, required=True, validate=NAME_LENGTH, metadata={"example": "Семёнов"}
    )
    description = StorableString(
        allow_none=True, validate=DESCRIPTION_LENGTH, metadata={"example": "follow-up"}
    )


class PatientUpdateSchema(InputSchema):
    """``PUT`` body: any non-empty subset; names cannot be null or blank."""

    first_name = StorableString(strip=True, validate=NAME_LENGTH, metadata={"example": "Иван"})
    last_name = StorableString(strip=True, validate=NAME_LENGTH, metadata={"example": "Семёнов"})
    description = StorableString(
        allow_none=True, validate=DESCRIPTION_LENGTH, metadata={"example": "second opinion"}
    )

    @ma.validates_schema
    def require_a_field(self, data: dict, **kwargs) -> None:
        """An update must change something."""
        if not data:
            raise ma.ValidationError("Provide at least one of first_name, last_name, description.")


class PatientQuerySchema(PageArgsSchema):
    """List arguments: paging plus ``q``, words matched against first or last name."""

    # Two names of at most 100 characters each: a longer query can match nothing, and very long
    # ones only make the trigram search expensive.
    q = StorableString(
        load_default="",
        validate=ma.validate.Length(max=500),
        metadata={
            "description": (
                "Case-insensitive substring search on first or last name; every "
                "whitespace-separated word must match; `ё` and `е` are the same letter; "
                "`%` and `_` match literally."
            ),
            "example": "семенов",
        },
    )
