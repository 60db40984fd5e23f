"""Patient search by name, and its remembered totals.

The invariant, explained here once: ``table_counts.version`` of ``patients`` is a random number
that triggers (migration 0006, PostgreSQL and SQLite alike) redraw in every statement that
inserts, deletes or changes a searched column. A total counted at one version is exact for as
long as the version stays the same, so a search read again at that version reuses its total
instead of counting every match again. Versions are random, so one seen in another database
(or before a restore) never matches.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Column, ColumnElement, bindparam, select

from medscan.models import Patient, TableCount
from medscan.paging import TOTAL, PageQuery, paged
from medscan.patients.schemas import PatientSchema
from medscan.reads import columns_for, read_connection

# The label of the table's version carried on every row of a page.
VERSION = "table_version"
PATIENT_COLUMNS = columns_for(PatientSchema, Patient.__table__)


class SearchPageQuery(PageQuery):
    """A filtered ``PageQuery`` that remembers each search's exact total while the version holds.

    Totals are kept per process for the ``size`` most recent sets of filter values, with the
    version they were counted at. The version is read first, on its own (one index lookup): when
    it matches, the page runs alone and carries the version again, in case a write committed in
    between. Otherwise the page and its count are read in one statement, as ``PageQuery`` does,
    so that they always agree.
    """

    def __init__(
        self, columns: Sequence[Column], filters: Sequence[ColumnElement[bool]], size: int = 1024
    ) -> None:
        super().__init__(columns, filters)
        self.version = select(TableCount.version).where(TableCount.table_name == self.table.name)
        version = self.version.scalar_subquery().label(VERSION)
        self.rows = self.rows.add_columns(version)
        self.total = select(self.total.scalar_subquery().label(TOTAL), version)
        self.page = paged(select(*columns, version).where(*filters).order_by(*self.newest_first))
        self.size = size
        self.remembered: OrderedDict[bytes, tuple[int, int]] = OrderedDict()
        self.lock = threading.Lock()

    def fetch(self, limit: int, offset: int, **params: Any) -> dict[str, Any]:
        """The page envelope, counting only when the table changed since the last count."""
        # A digest, not the words: a 500-character search must not pin 500 characters per entry.
        key = hashlib.blake2b(repr(sorted(params.items())).encode(), digest_size=16).digest()
        with self.lock:
            remembered = self.remembered.get(key)
        with read_connection() as connection:
            # The version alone is one index lookup: a stale total costs no wasted page.
            if remembered is not None and connection.scalar(self.version) == remembered[0]:
                rows = self.read(connection, self.page, limit, offset, params)
                # The page carries the version too, in case a write committed in between.
                if not rows or rows[0][VERSION] == remembered[0]:
                    self.remember(key, remembered)
                    return self.envelope(rows, remembered[1], limit, offset)
            # Never counted, or the table changed: the page and its count in one statement, so
            # that they agree even while writes commit.
            rows = self.read(connection, self.rows, limit, offset, params)
            if rows:
                version, total = rows[0][VERSION], rows[0][TOTAL]
            else:
                total, version = connection.execute(self.total, params).one()
        self.remember(key, (version, total))
        return self.envelope(rows, total, limit, offset)

    def remember(self, key: bytes, version_and_total: tuple[int, int]) -> None:
        """Keep the newest ``size`` totals, most recently used last."""
        with self.lock:
            self.remembered[key] = version_and_total
            self.remembered.move_to_end(key)
            if len(self.remembered) > self.size:
                self.remembered.popitem(last=False)


# LIKE's escape character: ``%`` and ``_`` in a search word match literally.
ESCAPE = "/"


@functools.lru_cache(maxsize=32)
def name_search(words: int) -> SearchPageQuery:
    """Pages of patients whose folded names contain every one of ``words`` bound words."""
    return SearchPageQuery(
        PATIENT_COLUMNS,
        [Patient.search_name.like(bindparam(f"word{i}"), escape=ESCAPE) for i in range(words)],
    )


def contains_pattern(word: str) -> str:
    """The LIKE pattern matching ``word`` anywhere, its wildcards taken literally."""
    for special in (ESCAPE, "%", "_"):
        word = word.replace(special, ESCAPE + special)
    return f"%{word}%"
