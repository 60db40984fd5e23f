"""The application factory: configuration, then one small ``register_*`` step per concern."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from flask_cors import CORS
from werkzeug.middleware.proxy_fix import ProxyFix

from medscan import cli, errors
from medscan.analysis import register_model
from medscan.api import IdConverter, api
from medscan.apidocs import OPENAPI_SETTINGS, register_apidocs
from medscan.auth import register_auth
from medscan.bulk.routes import bp as bulk_bp
from medscan.config import MIB, load_config
from medscan.extensions import db, migrate
from medscan.health.routes import bp as health_bp
from medscan.logs import register_logging
from medscan.patients.routes import bp as patients_bp
from medscan.queue import register_queue
from medscan.reads import engine_options, reads_binds
from medscan.scans.routes import bp as scans_bp
from medscan.storage import ScanStorage, register_sweeper
from medscan.uploads import register_uploads
from medscan.workspace import sweep_stale_work_dirs

# JSON bodies are small; upload endpoints raise this per request (uploads.receive_uploads_into).
MAX_JSON_BODY = MIB


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app from the environment (and ``.env``); ``config`` overrides, e.g. in tests."""
    app = Flask("medscan", instance_relative_config=True)
    app.config.update(OPENAPI_SETTINGS, MAX_CONTENT_LENGTH=MAX_JSON_BODY)
    # Flask-Migrate's default, ./migrations; wsgi.py names the folder beside it.
    app.config.update(MIGRATIONS_DIR="migrations")
    app.config.update(load_config(app.instance_path))
    app.config.update(config or {})
    app.json.ensure_ascii = False  # Cyrillic names as UTF-8, not \u escapes
    app.json.sort_keys = False  # keys in schema order, e.g. the seven report keys
    register_logging(app)
    register_auth(app)
    register_proxy(app)
    register_cors(app)
    register_storage(app)
    register_uploads(app)
    register_extensions(app)
    register_model(app)
    register_queue(app)
    register_blueprints(app)
    register_apidocs(app)
    errors.register_errors(app)
    cli.register_cli(app)
    return app


def register_proxy(app: Flask) -> None:
    """Behind ``MEDSCAN_TRUSTED_PROXIES`` proxies (nginx: 1), trust their X-Forwarded-* headers."""
    hops = app.config["MEDSCAN_TRUSTED_PROXIES"]
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)


def register_cors(app: Flask) -> None:
    """Let browser frontends on ``MEDSCAN_CORS_ORIGINS`` call the API (no origins: no CORS)."""
    origins = app.config["MEDSCAN_CORS_ORIGINS"]
    if origins:
        CORS(
            app,
            resources={r"/api/*": {"origins": "*" if "*" in origins else list(origins)}},
            allow_headers=["Authorization", "Content-Type", "X-API-Key", "X-Request-ID"],
            expose_headers=["Content-Disposition", "X-Request-ID", "ETag", "Location"],
            max_age=600,
        )


def register_storage(app: Flask) -> None:
    """Create the storage and work folders; sweep what killed workers left in them, and from
    the first request on reconcile scan rows with stored files (medscan.storage)."""
    storage = ScanStorage(app.config["MEDSCAN_STORAGE_DIR"])
    # Queued runs' archives: shared by the API and the workers (never swept by pid).
    app.config["MEDSCAN_RUNS_DIR"] = app.config["MEDSCAN_RUNS_DIR"] or str(
        Path(app.config["MEDSCAN_WORK_DIR"]) / "runs"
    )
    for folder in (storage.incoming, Path(app.config["MEDSCAN_WORK_DIR"])):
        folder.mkdir(parents=True, exist_ok=True)
        sweep_stale_work_dirs(folder)
    register_sweeper(app)


def register_extensions(app: Flask) -> None:
    """Bind the database (and its reads engine), migrations and the OpenAPI document to the app."""
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    options = engine_options(
        url, app.config["MEDSCAN_DB_LOCK_TIMEOUT_S"], app.config["MEDSCAN_DB_STATEMENT_TIMEOUT_S"]
    )
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", options)
    app.config.setdefault("SQLALCHEMY_BINDS", reads_binds(url, options))
    db.init_app(app)
    migrate.init_app(app, db, directory=str(app.config["MIGRATIONS_DIR"]))
    api.init_app(app)


def register_blueprints(app: Flask) -> None:
    """Mount every resource (their path ids use the ``id`` converter)."""
    app.url_map.converters["id"] = IdConverter
    api.register_blueprint(health_bp)
    api.register_blueprint(patients_bp)
    api.register_blueprint(scans_bp)
    api.register_blueprint(bulk_bp)
