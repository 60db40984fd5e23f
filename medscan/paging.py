"""Limit/offset paging: the query arguments and the page envelope, shared by every list."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import marshmallow as ma
from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Integer,
    RowMapping,
    Select,
    bindparam,
    func,
    select,
)

from medscan.models import TableCount
from medscan.reads import read_connection

MAX_LIMIT = 100
MAX_OFFSET = 2**31 - 1
# The label of the total carried on every row of a page.
TOTAL = "total_matches"


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
            "total": ma.fields.Integer(
                required=True, metadata={"description": "all matches", "example": 1}
            ),
            "limit": ma.fields.Integer(required=True, metadata={"example": 20}),
            "offset": ma.fields.Integer(required=True, metadata={"example": 0}),
        },
        name=name,
    )


class PageQuery:
    """Pages of one table's ``columns``, newest first, matching every filter, with their total.

    The order is ``created_at`` then ``id``, both descending, so pages are stable. The
    statements are built once, with ``limit``, ``offset`` and the filters' values as bound
    parameters: building a statement of this shape costs more than running it on an index.
    One statement reads the page and the exact total together, on the reads connection.
    Without filters the total is the trigger-kept row count in ``table_counts``. With filters
    the matches are a CTE that both the count and the page use, so an expensive filter such as
    a trigram search runs once per request, not twice.
    """

    def __init__(
        self, columns: Sequence[Column], filters: Sequence[ColumnElement[bool]] = ()
    ) -> None:
        self.table = table = columns[0].table
        self.names = [column.key for column in columns]
        self.newest_first = (table.c.created_at.desc(), table.c.id.desc())
        if filters:
            matches = select(table.c.id, table.c.created_at).where(*filters).cte("matches")
            self.total = select(func.count()).select_from(matches)
            page = paged(
                select(matches.c.id, matches.c.created_at).order_by(
                    matches.c.created_at.desc(), matches.c.id.desc()
                )
            ).subquery("page")
            self.rows = (
                select(*columns, self.total.scalar_subquery().label(TOTAL))
                .join_from(table, page, table.c.id == page.c.id)
                .order_by(page.c.created_at.desc(), page.c.id.desc())
            )
        else:
            self.total = select(TableCount.row_count).where(TableCount.table_name == table.name)
            self.rows = paged(
                select(*columns, self.total.scalar_subquery().label(TOTAL)).order_by(
                    *self.newest_first
                )
            )

    def fetch(self, limit: int, offset: int, **params: Any) -> dict[str, Any]:
        """The page envelope; ``params`` are the values the filters bind."""
        with read_connection() as connection:
            rows = self.read(connection, self.rows, limit, offset, params)
            # A page past the end has no row to carry the total: count on its own.
            total = rows[0][TOTAL] if rows else connection.scalar(self.total, params)
        return self.envelope(rows, total, limit, offset)

    @staticmethod
    def read(
        connection: Connection, statement: Select, limit: int, offset: int, params: dict
    ) -> Sequence[RowMapping]:
        """The rows of a paged statement."""
        return (
            connection.execute(statement, {"limit": limit, "offset": offset, **params})
            .mappings()
            .all()
        )

    def envelope(
        self, rows: Sequence[RowMapping], total: int, limit: int, offset: int
    ) -> dict[str, Any]:
        """``{items, total, limit, offset}``, each item holding only ``columns``."""
        items = [{name: row[name] for name in self.names} for row in rows]
        return {"items": items, "total": total, "limit": limit, "offset": offset}


def paged(statement: Select) -> Select:
    """``statement`` with ``LIMIT :limit OFFSET :offset``."""
    return statement.limit(bindparam("limit", type_=Integer)).offset(
        bindparam("offset", type_=Integer)
    )
