"""Migrations are the only way the schema is made, both ways, on the configured database."""

from __future__ import annotations

import flask_migrate
from sqlalchemy import inspect

from medscan.extensions import db


def table_names() -> set[str]:
    return set(inspect(db.engine).get_table_names()) - {"alembic_version"}


def test_downgrade_to_base_and_upgrade_again(app):
    with app.app_context():
        model_tables = set(db.metadata.tables)
        assert table_names() == model_tables
        flask_migrate.downgrade(revision="base")
        db.engine.dispose()
        assert table_names() == set()
        flask_migrate.upgrade()
        db.engine.dispose()
        assert table_names() == model_tables


def test_models_and_migrations_agree(app, runner):
    result = runner.invoke(args=["db", "check"])
    assert result.exit_code == 0, result.output
