"""A journal of scan files to unlink, written by the database itself whenever a scan row goes.

A trigger on ``scans`` records the id of every deleted row in ``scan_file_deletions`` inside
the deleting transaction: a scan deleted on its own, by the cascade from its patient (also rows
committed after the deleting request looked), or by hand in psql. The service unlinks the file
after the commit and then drops the journal row; a process killed in between leaves the row,
and the next start (or the periodic sweep) finishes the job (medscan.storage).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

POSTGRES_FUNCTION = """
CREATE FUNCTION medscan_journal_scan_files() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO scan_file_deletions (scan_id) SELECT id FROM old_rows;
    RETURN NULL;
END
$$
"""
POSTGRES_TRIGGER = (
    "CREATE TRIGGER scans_journal_files AFTER DELETE ON scans REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION medscan_journal_scan_files()"
)
SQLITE_TRIGGER = (
    "CREATE TRIGGER scans_journal_files AFTER DELETE ON scans BEGIN "
    "INSERT INTO scan_file_deletions (scan_id) VALUES (OLD.id); END"
)


def upgrade():
    op.create_table(
        "scan_file_deletions",
        sa.Column("scan_id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("scan_id", name=op.f("pk_scan_file_deletions")),
    )
    if op.get_context().dialect.name == "postgresql":
        op.execute(POSTGRES_FUNCTION)
        op.execute(POSTGRES_TRIGGER)
    else:
        op.execute(SQLITE_TRIGGER)


def downgrade():
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP TRIGGER scans_journal_files ON scans")
        op.execute("DROP FUNCTION medscan_journal_scan_files()")
    else:
        op.execute("DROP TRIGGER scans_journal_files")
    op.drop_table("scan_file_deletions")
