"""Health response schema."""

import marshmallow as ma


class HealthSchema(ma.Schema):
    """``{"status": "ok", "database": "ok"}``."""

    status = ma.fields.String(required=True, metadata={"example": "ok"})
    database = ma.fields.String(required=True, metadata={"example": "ok"})
