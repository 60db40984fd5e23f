"""Exact row counts of the listed tables, kept by triggers, so unfiltered totals cost nothing.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COUNTED = ("patients", "scans", "bulk_runs")

# One statement-level function for every counted table: COPY and bulk deletes (the cascade from
# patients to scans included) update the count once per statement, not once per row.
POSTGRES_FUNCTION = """
CREATE FUNCTION medscan_count_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE table_counts SET row_count = row_count + (SELECT count(*) FROM new_rows)
        WHERE table_name = TG_TABLE_NAME;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE table_counts SET row_count = row_count - (SELECT count(*) FROM old_rows)
        WHERE table_name = TG_TABLE_NAME;
    ELSE
        UPDATE table_counts SET row_count = 0 WHERE table_name = TG_TABLE_NAME;
    END IF;
    RETURN NULL;
END
$$
"""


def postgres_triggers(table: str) -> list[str]:
    run = "FOR EACH STATEMENT EXECUTE FUNCTION medscan_count_rows()"
    return [
        f"CREATE TRIGGER {table}_count_insert AFTER INSERT ON {table} "
        f"REFERENCING NEW TABLE AS new_rows {run}",
        f"CREATE TRIGGER {table}_count_delete AFTER DELETE ON {table} "
        f"REFERENCING OLD TABLE AS old_rows {run}",
        f"CREATE TRIGGER {table}_count_truncate AFTER TRUNCATE ON {table} {run}",
    ]


def sqlite_triggers(table: str) -> list[str]:
    return [
        f"CREATE TRIGGER {table}_count_{name} AFTER {event} ON {table} BEGIN "
        f"UPDATE table_counts SET row_count = row_count {sign} 1 WHERE table_name = '{table}'; END"
        for name, event, sign in (("insert", "INSERT", "+"), ("delete", "DELETE", "-"))
    ]


def upgrade():
    op.create_table(
        "table_counts",
        sa.Column("table_name", sa.String(length=63), nullable=False),
        sa.Column("row_count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("table_name", name=op.f("pk_table_counts")),
    )
    for table in COUNTED:
        op.execute(
            f"INSERT INTO table_counts (table_name, row_count) "
            f"SELECT '{table}', count(*) FROM {table}"
        )
    postgres = op.get_context().dialect.name == "postgresql"
    if postgres:
        op.execute(POSTGRES_FUNCTION)
    for table in COUNTED:
        for statement in postgres_triggers(table) if postgres else sqlite_triggers(table):
            op.execute(statement)


def downgrade():
    postgres = op.get_context().dialect.name == "postgresql"
    for table in COUNTED:
        for name in ("insert", "delete", "truncate") if postgres else ("insert", "delete"):
            op.execute(
                f"DROP TRIGGER {table}_count_{name} ON {table}"
                if postgres
                else f"DROP TRIGGER {table}_count_{name}"
            )
    if postgres:
        op.execute("DROP FUNCTION medscan_count_rows()")
    op.drop_table("table_counts")
