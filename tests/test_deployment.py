"""What the deployment files promise: the ``medscan`` command, a required database password."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from dotenv import dotenv_values

REPO = Path(__file__).resolve().parents[1]
MEDSCAN = Path(sys.executable).with_name("medscan")  # the console script of setup.cfg


def run_medscan(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The installed ``medscan`` command, without the developer's settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MEDSCAN_")}
    clean.pop("DATABASE_URL", None)
    return subprocess.run(
        [str(MEDSCAN), *args], cwd=cwd, env={**clean, **env}, capture_output=True, text=True
    )


def test_the_medscan_command_works_from_any_folder_and_only_the_server_warns(
    database_url, tmp_path
):
    helped = run_medscan("--help", cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert {"bulk", "check-storage"} <= set(re.findall(r"^  (\S+)", helped.stdout, re.M))
    checked = run_medscan(
        "check-storage",
        cwd=tmp_path,  # outside the source tree: no wsgi.py, no .env
        DATABASE_URL=database_url,
        MEDSCAN_STORAGE_DIR=str(tmp_path / "scans"),
        MEDSCAN_WORK_DIR=str(tmp_path / "work"),
    )
    assert checked.returncode == 0, checked.stderr
    assert "0 rows without files" in checked.stdout
    for result in (helped, checked):
        assert "MEDSCAN_API_KEYS" not in result.stdout + result.stderr


def test_compose_refuses_to_start_without_a_database_password():
    compose = (REPO / "docker-compose.yml").read_text()
    uses = re.findall(r"\$\{POSTGRES_PASSWORD([^}]*)\}", compose)
    assert len(uses) >= 2  # the db service's, the app's DATABASE_URL (and any other service's)
    assert all(use.startswith(":?") for use in uses)  # unset or empty: compose stops with this
    assert dotenv_values(REPO / ".env.example")["POSTGRES_PASSWORD"] == ""
