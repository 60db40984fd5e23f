"""Bulk runs, their report rows and their skipped files (deleted with the run).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def run_child(name: str, *columns: sa.Column) -> None:
    """A table of rows that belong to one run, in order."""
    op.create_table(
        name,
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        *columns,
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["bulk_runs.id"],
            name=op.f(f"fk_{name}_run_id_bulk_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "position", name=op.f(f"pk_{name}")),
    )


def upgrade():
    op.create_table(
        "bulk_runs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("studies", sa.Integer(), nullable=False),
        sa.Column("succeeded", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("model_version", sa.String(length=100), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bulk_runs")),
    )
    op.create_index("ix_bulk_runs_created_at_id", "bulk_runs", ["created_at", "id"])
    document = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    run_child(
        "bulk_run_items",
        sa.Column("report", document, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
    )
    run_child(
        "bulk_run_skipped_files",
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
    )


def downgrade():
    op.drop_table("bulk_run_skipped_files")
    op.drop_table("bulk_run_items")
    op.drop_index("ix_bulk_runs_created_at_id", table_name="bulk_runs")
    op.drop_table("bulk_runs")
