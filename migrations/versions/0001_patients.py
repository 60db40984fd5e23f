"""Patients, with a folded search column served by a trigram index on PostgreSQL.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    if op.get_context().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.create_table(
        "patients",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("first_name", sa.String(length=100), nullable=False),
        sa.Column("last_name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("search_name", sa.String(length=201), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patients")),
    )
    op.create_index("ix_patients_created_at_id", "patients", ["created_at", "id"])
    op.create_index(
        "ix_patients_search_name_trgm",
        "patients",
        ["search_name"],
        postgresql_using="gin",
        postgresql_ops={"search_name": "gin_trgm_ops"},
        # No pending list: with fastupdate every search scans the not-yet-merged inserts
        # linearly (measured: 2 ms -> 17 ms after 9k inserts), until the next vacuum.
        postgresql_with={"fastupdate": "off"},
    )


def downgrade():
    op.drop_index("ix_patients_search_name_trgm", table_name="patients")
    op.drop_index("ix_patients_created_at_id", table_name="patients")
    op.drop_table("patients")
