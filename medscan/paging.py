"""Limit/offset paging: the query arguments and the page envelope, shared by every list."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from sqlalchemy import Select, func, select

from medscan.extensions import db
from medscan.models import TableCount

MAX_LIMIT = 100
MAX_OFFSET = 2**31 - 1


class PageArgsSchema(ma.Schema):
    """``limit`` 1..100 (default 20) and ``offset`` 0..2147483647 (default 0)."""

    limit = ma.fields.Integer(
        load_default=20, strict=False, validate=ma.validate.Range(1, MAX_LIMIT)
    )
    offset = ma.fields.Integer(
        load_default=0, strict=False, validate=ma.validate.Range(0, MAX_OFFSET)
    )


def page_schema(item_schema: type[ma.Schema], name: str) -> type[ma.Schema]:
    """The ``{items, total, limit, offset}`` envelope around ``item_schema``."""
    return ma.Schema.from_dict(
        {
            "items": ma.fields.List(ma.fields.Nested(item_schema), required=True),
            "total": ma.fields.Integer(required=True),
            "limit": ma.fields.Integer(required=True),
            "offset": ma.fields.Integer(required=True),
        },
        name=name,
    )


def paginate(query: Select, limit: int, offset: int) -> dict[str, Any]:
    """Run ``query`` (already filtered and ordered) for one page and count all its matches.

    A query without a filter takes its exact total from ``table_counts`` (kept by triggers)
    rather than counting every row of the table.
    """
    if query.whereclause is None:
        (table,) = query.get_final_froms()
        total = db.session.scalar(
            select(TableCount.row_count).where(TableCount.table_name == table.name)
        )
    else:
        total = db.session.scalar(
            select(func.count()).select_from(query.order_by(None).subquery())
        )
    items = db.session.scalars(query.limit(limit).offset(offset)).all()
    return {"items": items, "total": total, "limit": limit, "offset": offset}
