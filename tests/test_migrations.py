"""Migrations are the only way the schema is made, both ways, on the configured database."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import flask_migrate
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, make_url, text

from medscan.extensions import db
from tests.conftest import MIGRATIONS

REPO = MIGRATIONS.parent
ENV_PY = MIGRATIONS / "env.py"
HEAD = ScriptDirectory(str(MIGRATIONS)).get_current_head()


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


@pytest.fixture
def fresh_postgres(database_url: str) -> Iterator[str]:
    """A new, empty database on the test PostgreSQL server (PostgreSQL runs only)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("advisory locks are PostgreSQL's")
    server = create_engine(database_url, isolation_level="AUTOCOMMIT")
    name = f"medscan_upgrade_{uuid.uuid4().hex[:12]}"
    with server.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield make_url(database_url).set(database=name).render_as_string(hide_password=False)
    with server.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    server.dispose()


def flask_db_upgrade(url: str, folder: Path) -> subprocess.Popen[str]:
    """``flask --app wsgi db upgrade`` as the entrypoint runs it, in another working directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDSCAN_")}
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", str(REPO / "wsgi.py"), "db", "upgrade"],
        cwd=folder,
        env={
            **env,
            "DATABASE_URL": url,
            "MEDSCAN_STORAGE_DIR": str(folder / "scans"),
            "MEDSCAN_WORK_DIR": str(folder / "work"),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_replicas_upgrading_together_take_turns(fresh_postgres, tmp_path):
    """Two real ``db upgrade`` processes on an empty database: both wait for the advisory lock
    before touching the schema, then one migrates and the other finds the schema current."""
    lock = int(re.search(r"MIGRATIONS_LOCK = (0x[0-9A-F]+)", ENV_PY.read_text())[1], 16)
    engine = create_engine(fresh_postgres)
    try:
        with engine.connect() as holder:
            holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": lock})
            holder.commit()
            upgrades = [flask_db_upgrade(fresh_postgres, tmp_path) for _ in range(2)]
            waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            deadline = time.monotonic() + 60
            while holder.execute(text(waiting)).scalar() < 2:
                holder.commit()
                assert all(p.poll() is None for p in upgrades), upgrades[0].communicate()[0]
                assert time.monotonic() < deadline, "the upgrades do not wait for the lock"
                time.sleep(0.1)
            assert inspect(holder).get_table_names() == []  # nothing migrated meanwhile
            holder.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": lock})
            holder.commit()
        outputs = [p.communicate(timeout=120)[0] for p in upgrades]
        assert [p.returncode for p in upgrades] == [0, 0], outputs
        assert sum("Running upgrade  -> 0001" in output for output in outputs) == 1
        with engine.connect() as connection:
            version = connection.execute(text("SELECT version_num FROM alembic_version")).all()
            assert set(inspect(connection).get_table_names()) == set(db.metadata.tables) | {
                "alembic_version"
            }
        assert [v for (v,) in version] == [HEAD]
    finally:
        engine.dispose()
