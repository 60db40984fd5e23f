"""A version per counted table, redrawn by every write that can change which rows a search finds.

A search can then remember its exact total and reuse it while the version stays the same. The
version is random, not a counter, so a version seen in one database never vouches for another
(a database recreated or restored from a backup under the same URL draws new ones).

With its total remembered, a search costs its page alone, and the page's plan depends on how
many rows PostgreSQL expects the words to match. With the default statistics (100 values) it
expected 100 rows for ``иванов`` (5,250 at a million patients) and sorted every match instead of
walking ``created_at`` newest first: 40 ms instead of 6. 1,000 values estimate such words within
a factor of two.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

COUNTED = ("patients", "scans", "bulk_runs")
# Updates of these columns change search results too (patients are searched by search_name).
SEARCHED = {"patients": "search_name"}
SEARCH_STATISTICS = 1000
# Draws a new random version (63 bits), by dialect.
NEW_VERSION = {
    "postgresql": "version = (random() * 9.2e18)::bigint",
    "sqlite": "version = random()",
}


def postgres_function(versioned: bool) -> str:
    """0005's statement-level function; ``versioned`` draws a new version once per statement."""
    bump = f", {NEW_VERSION['postgresql']}" if versioned else ""
    on_update = (
        f"ELSIF TG_OP = 'UPDATE' THEN\n"
        f"        UPDATE table_counts SET {NEW_VERSION['postgresql']} "
        f"WHERE table_name = TG_TABLE_NAME;\n"
        if versioned
        else ""
    )
    return f"""
CREATE OR REPLACE FUNCTION medscan_count_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE table_counts SET row_count = row_count + (SELECT count(*) FROM new_rows){bump}
        WHERE table_name = TG_TABLE_NAME;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE table_counts SET row_count = row_count - (SELECT count(*) FROM old_rows){bump}
        WHERE table_name = TG_TABLE_NAME;
    {on_update}ELSE
        UPDATE table_counts SET row_count = 0{bump} WHERE table_name = TG_TABLE_NAME;
    END IF;
    RETURN NULL;
END
$$
"""


def sqlite_triggers(table: str, versioned: bool) -> list[str]:
    """0005's row-level triggers; ``versioned`` also draws new versions, on searched columns too."""
    bump = f", {NEW_VERSION['sqlite']}" if versioned else ""
    triggers = [
        f"CREATE TRIGGER {table}_count_{name} AFTER {event} ON {table} BEGIN "
        f"UPDATE table_counts SET row_count = row_count {sign} 1{bump} "
        f"WHERE table_name = '{table}'; END"
        for name, event, sign in (("insert", "INSERT", "+"), ("delete", "DELETE", "-"))
    ]
    if versioned and table in SEARCHED:
        triggers.append(
            f"CREATE TRIGGER {table}_count_update AFTER UPDATE OF {SEARCHED[table]} ON {table} "
            f"BEGIN UPDATE table_counts SET {NEW_VERSION['sqlite']} "
            f"WHERE table_name = '{table}'; END"
        )
    return triggers


def drop_sqlite_triggers() -> None:
    for table in COUNTED:
        for name in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_count_{name}")


def create_sqlite_triggers(versioned: bool) -> None:
    for table in COUNTED:
        for statement in sqlite_triggers(table, versioned):
            op.execute(statement)


def upgrade():
    with op.batch_alter_table("table_counts") as batch_op:
        batch_op.add_column(
            sa.Column("version", sa.BigInteger(), nullable=False, server_default="0")
        )
    dialect = op.get_context().dialect.name
    op.execute(f"UPDATE table_counts SET {NEW_VERSION[dialect]}")
    if dialect != "postgresql":
        drop_sqlite_triggers()
        create_sqlite_triggers(versioned=True)
        return
    op.execute(postgres_function(versioned=True))
    for table, column in SEARCHED.items():
        op.execute(
            f"CREATE TRIGGER {table}_count_update AFTER UPDATE OF {column} ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION medscan_count_rows()"
        )
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET STATISTICS {SEARCH_STATISTICS}")
        op.execute(f"ANALYZE {table} ({column})")


def downgrade():
    postgres = op.get_context().dialect.name == "postgresql"
    if postgres:
        for table, column in SEARCHED.items():
            op.execute(f"DROP TRIGGER {table}_count_update ON {table}")
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET STATISTICS -1")
        op.execute(postgres_function(versioned=False))
    else:
        # SQLite copies table_counts to drop a column: no trigger may name it meanwhile.
        drop_sqlite_triggers()
    with op.batch_alter_table("table_counts") as batch_op:
        batch_op.drop_column("version")
    if not postgres:
        create_sqlite_triggers(versioned=False)
