"""Bulk runs watched while they work: status, progress, error, request id and heartbeat.

A run row now exists from the moment its upload is received (``queued`` or ``running``), so
its results and model are null until it finishes or starts. Runs stored before this revision
were finished synchronous runs: ``succeeded``, with every study done.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

LATER = ("finished_at", "model_name", "model_version", "threshold")
TYPES = {
    "finished_at": sa.DateTime(timezone=True),
    "model_name": sa.String(length=200),
    "model_version": sa.String(length=100),
    "threshold": sa.Float(),
}


def upgrade():
    with op.batch_alter_table("bulk_runs") as batch:
        batch.add_column(
            sa.Column("status", sa.String(length=16), nullable=False, server_default="succeeded")
        )
        batch.add_column(
            sa.Column("progress_done", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("progress_total", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("error", sa.Text(), nullable=True))
        batch.add_column(sa.Column("request_id", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        for name in LATER:
            batch.alter_column(name, existing_type=TYPES[name], nullable=True)
    op.execute("UPDATE bulk_runs SET progress_done = studies, progress_total = studies")
    with op.batch_alter_table("bulk_runs") as batch:  # new rows always say their status
        batch.alter_column("status", existing_type=sa.String(length=16), server_default=None)
    if op.get_context().dialect.name == "sqlite":
        count_triggers()
    op.create_index("ix_bulk_runs_status", "bulk_runs", ["status"])
    op.create_index(
        "ix_bulk_runs_request_id_created_at_id", "bulk_runs", ["request_id", "created_at", "id"]
    )


def downgrade():
    op.drop_index("ix_bulk_runs_request_id_created_at_id", table_name="bulk_runs")
    op.drop_index("ix_bulk_runs_status", table_name="bulk_runs")
    op.execute("DELETE FROM bulk_runs WHERE status <> 'succeeded'")
    with op.batch_alter_table("bulk_runs") as batch:
        for name in LATER:
            batch.alter_column(name, existing_type=TYPES[name], nullable=False)
        for name in ("heartbeat_at", "request_id", "error", "progress_total", "progress_done"):
            batch.drop_column(name)
        batch.drop_column("status")
    if op.get_context().dialect.name == "sqlite":
        count_triggers()


def count_triggers() -> None:
    """SQLite drops a table's triggers when batch mode rebuilds it: 0006's row counters again."""
    for name, event, sign in (("insert", "INSERT", "+"), ("delete", "DELETE", "-")):
        op.execute(f"DROP TRIGGER IF EXISTS bulk_runs_count_{name}")
        op.execute(
            f"CREATE TRIGGER bulk_runs_count_{name} AFTER {event} ON bulk_runs BEGIN "
            f"UPDATE table_counts SET row_count = row_count {sign} 1, version = random() "
            f"WHERE table_name = 'bulk_runs'; END"
        )
