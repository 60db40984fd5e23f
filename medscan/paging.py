"""Limit/offset paging: the query arguments and the page envelope, shared by every list."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import marshmallow as ma
from sqlalchemy import ColumnElement, func, select

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


def paginate(
    model: type, filters: Sequence[ColumnElement[bool]], limit: int, offset: int
) -> dict[str, Any]:
    """One page of ``model`` rows matching every filter, newest first, and their exact total.

    The order is ``created_at`` then ``id``, both descending, so pages are stable. Without
    filters the total is the trigger-kept row count in ``table_counts``. With filters a single
    statement reads the matches once (a CTE that both the count and the page use), so an
    expensive filter such as a trigram search runs once per request, not twice.
    """
    if not filters:
        total = db.session.scalar(
            select(TableCount.row_count).where(TableCount.table_name == model.__tablename__)
        )
        query = select(model).order_by(model.created_at.desc(), model.id.desc())
        items = db.session.scalars(query.limit(limit).offset(offset)).all()
        return {"items": items, "total": total, "limit": limit, "offset": offset}
    matches = select(model.id, model.created_at).where(*filters).cte("matches")
    page = (
        select(matches.c.id, matches.c.created_at)
        .order_by(matches.c.created_at.desc(), matches.c.id.desc())
        .limit(limit)
        .offset(offset)
        .subquery("page")
    )
    count = select(func.count()).select_from(matches)
    rows = db.session.execute(
        select(model, count.scalar_subquery())
        .join(page, model.id == page.c.id)
        .order_by(page.c.created_at.desc(), page.c.id.desc())
    ).all()
    # A page past the end has no row to carry the total: count on its own.
    total = rows[0][1] if rows else db.session.scalar(count)
    return {"items": [row[0] for row in rows], "total": total, "limit": limit, "offset": offset}
