"""Fixtures: an app on real PostgreSQL (``MEDSCAN_TEST_DATABASE_URL``) or a temporary SQLite file.

The schema always comes from the migrations, never from ``create_all``.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import flask_migrate
import pytest
from flask import Flask
from flask.testing import FlaskClient

from medscan import create_app
from medscan.config import database_url as normalize_database_url
from medscan.extensions import db
from tests.tools import need

TEST_DATABASE_URL = os.environ.get("MEDSCAN_TEST_DATABASE_URL", "")
MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"
# Test-run switches, not service settings: MEDSCAN_REQUIRE_TOOLS=1 (CI) turns a missing external
# tool (dcmtk, 7z, mount...) from a skip into a failure; MEDSCAN_TEST_BROKER_URL is the Redis
# database of the queue tests (tests/queue).
KEPT_VARIABLES = frozenset({"MEDSCAN_REQUIRE_TOOLS", "MEDSCAN_TEST_BROKER_URL"})


@pytest.fixture(scope="session", autouse=True)
def clean_environment() -> Iterator[None]:
    """Settings of the developer's shell or ``.env`` must not leak into the tests."""
    saved = {
        key: value
        for key, value in os.environ.items()
        if (key.startswith("MEDSCAN_") or key == "DATABASE_URL") and key not in KEPT_VARIABLES
    }
    for key in saved:
        del os.environ[key]
    yield
    os.environ.update(saved)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The test database, migrated to the newest revision once per session."""
    url = normalize_database_url(TEST_DATABASE_URL, str(tmp_path_factory.mktemp("db")))
    app = make_app(url, tmp_path_factory.mktemp("instance"))
    with app.app_context():
        flask_migrate.upgrade()
        db.engine.dispose()
    return url


def make_app(url: str, folder: Path, **overrides) -> Flask:
    """An app for tests, with its files under ``folder``."""
    return create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": url,
            "MIGRATIONS_DIR": MIGRATIONS,
            "MEDSCAN_STORAGE_DIR": str(folder / "scans"),
            "MEDSCAN_WORK_DIR": str(folder / "work"),
            **overrides,
        }
    )


@pytest.fixture
def app_config() -> dict:
    """Per-test overrides of the app's settings (override this fixture in a module)."""
    return {}


@pytest.fixture
def app(database_url: str, tmp_path: Path, app_config: dict, monkeypatch) -> Iterator[Flask]:
    """An app on the test database, whose tables are emptied before the test."""
    monkeypatch.chdir(tmp_path)
    app = make_app(database_url, tmp_path, **app_config)
    with app.app_context():
        for table in reversed(db.metadata.sorted_tables):
            if table.name != "table_counts":  # kept exact by triggers as rows go
                db.session.execute(table.delete())
        db.session.commit()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of ``app``."""
    return app.test_client()


@pytest.fixture
def runner(app: Flask):
    """A CLI runner of ``app``."""
    return app.test_cli_runner()


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """``tmpfs("size=2m")``: a small file system of the test's own, unmounted afterwards.

    Needs root (or mount permission): a real full disk, not a mocked one.
    """
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        point = tmp_path / f"disk-{uuid.uuid4().hex}"
        point.mkdir()
        command = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        need(result.returncode == 0, f"mount -t tmpfs ({result.stderr.strip()})")
        mounted.append(point)
        return point

    try:
        yield mount
    finally:
        for point in mounted:
            subprocess.run(["umount", "-l", str(point)], check=True)
