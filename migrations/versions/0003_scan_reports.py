"""Scan reports: the last analysis of each scan (JSONB on PostgreSQL) and its provenance.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    document = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    with op.batch_alter_table("scans") as batch_op:
        batch_op.add_column(sa.Column("report_json", document, nullable=True))
        batch_op.add_column(sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("analysis_model", sa.String(length=200), nullable=True))
        batch_op.add_column(
            sa.Column("analysis_model_version", sa.String(length=100), nullable=True)
        )
        batch_op.add_column(sa.Column("analysis_threshold", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("analysis_error", sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table("scans") as batch_op:
        for column in (
            "analysis_error",
            "analysis_threshold",
            "analysis_model_version",
            "analysis_model",
            "processed_at",
            "report_json",
        ):
            batch_op.drop_column(column)
