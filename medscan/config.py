"""Settings read from the environment (and a ``.env`` file) in one place."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dotenv import find_dotenv, load_dotenv

MIB = 1 << 20
LOG_FORMATS = ("text", "json")


class ConfigError(ValueError):
    """A setting has a value the service cannot run with."""


def _int(name: str, value: str, minimum: int = 1) -> int:
    """``value`` as an integer of at least ``minimum``."""
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {number}")
    return number


def _count(name: str, value: str) -> int:
    """``value`` as an integer of at least 0."""
    return _int(name, value, minimum=0)


def _threshold(name: str, value: str) -> float:
    """``value`` as a number within 0..1."""
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not 0.0 <= number <= 1.0:
        raise ConfigError(f"{name} must be within 0..1, got {number}")
    return number


def _csv(name: str, value: str) -> tuple[str, ...]:
    """The non-empty items of a comma-separated ``value``, stripped."""
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _text(name: str, value: str) -> str:
    """``value`` stripped."""
    return value.strip()


def _log_format(name: str, value: str) -> str:
    """``value`` as one of LOG_FORMATS."""
    if value.strip().lower() not in LOG_FORMATS:
        raise ConfigError(f"{name} must be text or json, got {value!r}")
    return value.strip().lower()


# Environment variable -> (parser, default). The Flask config key is the variable's name.
SETTINGS: dict[str, tuple[Callable[[str, str], Any], str]] = {
    "MEDSCAN_STORAGE_DIR": (_text, ""),
    "MEDSCAN_WORK_DIR": (_text, ""),
    "MEDSCAN_MAX_SCAN_MB": (_int, "2048"),
    "MEDSCAN_MAX_BULK_MB": (_int, "4096"),
    "MEDSCAN_MAX_UNZIPPED_MB": (_int, "16384"),
    "MEDSCAN_MAX_ZIP_ENTRIES": (_int, "100000"),
    "MEDSCAN_BODY_TIMEOUT_S": (_int, "30"),
    "MEDSCAN_THRESHOLD": (_threshold, "0.5"),
    "MEDSCAN_MODEL": (_text, ""),
    "MEDSCAN_API_KEYS": (_csv, ""),
    "MEDSCAN_CORS_ORIGINS": (_csv, ""),
    "MEDSCAN_TRUSTED_PROXIES": (_count, "0"),
    "MEDSCAN_LOG_LEVEL": (_text, "INFO"),
    "MEDSCAN_LOG_FORMAT": (_log_format, "text"),
    "MEDSCAN_DB_LOCK_TIMEOUT_S": (_count, "10"),
    "MEDSCAN_DB_STATEMENT_TIMEOUT_S": (_count, "60"),
    "MEDSCAN_STORAGE_SWEEP_S": (_count, "3600"),
    "MEDSCAN_ORPHAN_GRACE_S": (_count, "600"),
    "MEDSCAN_BROKER_URL": (_text, ""),
    "MEDSCAN_RUNS_DIR": (_text, ""),
    "MEDSCAN_RUN_HEARTBEAT_S": (_int, "30"),
    "MEDSCAN_RUN_LOST_S": (_int, "300"),
}


def database_url(value: str, instance_path: str) -> str:
    """The SQLAlchemy URL: ``DATABASE_URL`` (plain ``postgresql://`` means psycopg2), or SQLite."""
    if not value:
        return f"sqlite:///{Path(instance_path) / 'medscan.db'}"
    scheme, separator, rest = value.partition("://")
    if scheme in ("postgres", "postgresql"):
        # psycopg2 is the driver we ship; SQLAlchemy 2.1 would otherwise pick psycopg 3.
        return f"postgresql+psycopg2{separator}{rest}"
    return value


def load_config(instance_path: str, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read every setting; ``.env`` in the working directory fills variables not already set.

    The factory calls this, so ``flask``, ``gunicorn`` and the console script all see the same
    ``.env``; variables set in the real environment always win over the file.
    """
    if environ is None:
        load_dotenv(find_dotenv(usecwd=True), override=False)
        environ = os.environ
    config: dict[str, Any] = {
        name: parse(name, environ.get(name, default)) for name, (parse, default) in SETTINGS.items()
    }
    config["MEDSCAN_STORAGE_DIR"] = config["MEDSCAN_STORAGE_DIR"] or str(
        Path(instance_path) / "scans"
    )
    config["MEDSCAN_WORK_DIR"] = config["MEDSCAN_WORK_DIR"] or str(Path(instance_path) / "work")
    if config["MEDSCAN_RUN_LOST_S"] < 2 * config["MEDSCAN_RUN_HEARTBEAT_S"]:
        raise ConfigError(
            "MEDSCAN_RUN_LOST_S must be at least twice MEDSCAN_RUN_HEARTBEAT_S, got "
            f"{config['MEDSCAN_RUN_LOST_S']} and {config['MEDSCAN_RUN_HEARTBEAT_S']}"
        )
    config["SQLALCHEMY_DATABASE_URI"] = database_url(environ.get("DATABASE_URL", ""), instance_path)
    return config
