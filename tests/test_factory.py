"""The app factory and the settings it reads."""

from __future__ import annotations

import os

import pytest

from medscan import create_app
from medscan.config import ConfigError, database_url, load_config


def test_overrides_win_over_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDSCAN_THRESHOLD", "0.7")
    folders = {"MEDSCAN_STORAGE_DIR": str(tmp_path / "s"), "MEDSCAN_WORK_DIR": str(tmp_path / "w")}
    app = create_app({"MEDSCAN_THRESHOLD": 0.9, **folders})
    assert app.config["MEDSCAN_THRESHOLD"] == 0.9
    assert (tmp_path / "s").is_dir()


def test_defaults_serve_a_local_run(tmp_path):
    config = load_config(str(tmp_path), environ={})
    assert config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'medscan.db'}"
    assert config["MEDSCAN_STORAGE_DIR"] == str(tmp_path / "scans")
    assert config["MEDSCAN_MAX_SCAN_MB"] == 2048
    assert config["MEDSCAN_MAX_BULK_MB"] == 4096
    assert config["MEDSCAN_MAX_UNZIPPED_MB"] == 16384
    assert config["MEDSCAN_MAX_ZIP_ENTRIES"] == 100000
    assert config["MEDSCAN_THRESHOLD"] == 0.5
    assert config["MEDSCAN_API_KEYS"] == ()


def test_dotenv_file_is_read_and_real_environment_wins(monkeypatch, tmp_path):
    (tmp_path / ".env").write_text("MEDSCAN_MAX_SCAN_MB=7\nMEDSCAN_THRESHOLD=0.25\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MEDSCAN_THRESHOLD", "0.75")
    monkeypatch.delenv("MEDSCAN_MAX_SCAN_MB", raising=False)
    config = load_config(str(tmp_path))
    monkeypatch.delenv("MEDSCAN_MAX_SCAN_MB")  # load_dotenv exported it
    assert config["MEDSCAN_MAX_SCAN_MB"] == 7
    assert config["MEDSCAN_THRESHOLD"] == 0.75


@pytest.mark.parametrize(
    ("name", "value"),
    [("MEDSCAN_MAX_SCAN_MB", "big"), ("MEDSCAN_MAX_SCAN_MB", "0"), ("MEDSCAN_THRESHOLD", "1.5")],
)
def test_bad_settings_stop_the_start(tmp_path, name, value):
    with pytest.raises(ConfigError, match=name):
        load_config(str(tmp_path), environ={name: value})


def test_lists_are_comma_separated(tmp_path):
    config = load_config(str(tmp_path), environ={"MEDSCAN_API_KEYS": " a, b ,,c"})
    assert config["MEDSCAN_API_KEYS"] == ("a", "b", "c")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("postgresql://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("sqlite:////x.db", "sqlite:////x.db"),
    ],
)
def test_postgres_urls_use_psycopg2(given, expected):
    assert database_url(given, "/unused") == expected


def test_importing_the_package_and_its_plain_libraries_does_not_import_flask():
    """``medscan`` and every module of the plain libraries (``medscan.analyzer``,
    ``medscan.safezip``, ``medscan.workspace``) load without Flask or Werkzeug."""
    import subprocess
    import sys

    code = (
        "import importlib, pkgutil, sys, medscan, medscan.workspace\n"
        "import medscan.analyzer as a, medscan.safezip as z\n"
        "for package in (a, z):\n"
        "    for m in pkgutil.iter_modules(package.__path__):\n"
        "        importlib.import_module(f'{package.__name__}.{m.name}')\n"
        "assert 'flask' not in sys.modules, 'flask imported'\n"
        "assert 'werkzeug' not in sys.modules, 'werkzeug imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_start_sweeps_what_killed_workers_left(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    incoming, work = tmp_path / "scans" / ".incoming", tmp_path / "work"
    for folder in (incoming, work):
        folder.mkdir(parents=True)
    stale_upload = incoming / f"medscan-{dead_pid}-upload-abc"
    stale_dir = work / f"medscan-{dead_pid}-xyz"
    live_upload = work / f"medscan-{os.getpid()}-upload-def"
    stale_upload.write_bytes(b"half a scan")
    stale_dir.mkdir()
    live_upload.write_bytes(b"in flight")
    create_app({"MEDSCAN_STORAGE_DIR": str(tmp_path / "scans"), "MEDSCAN_WORK_DIR": str(work)})
    assert not stale_upload.exists() and not stale_dir.exists()
    assert live_upload.exists()
