"""Optional API keys: ``MEDSCAN_API_KEYS`` closes every ``/api/`` route but the open ones."""

from __future__ import annotations

import hmac

from flask import Flask, current_app, request
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Unauthorized

OPEN_PATHS = ("/api/health", "/api/openapi.json")
OPEN_PREFIXES = ("/api/docs",)

SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer"},
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}


def presented_key() -> str | None:
    """The key sent as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.headers.get("X-API-Key") or None


def key_is_valid(key: str, keys: tuple[str, ...]) -> bool:
    """Compare against every configured key in constant time (no early exit, no timing leak)."""
    matches = [hmac.compare_digest(key.encode(), known.encode()) for known in keys]
    return any(matches)


def require_api_key() -> None:
    """401 for a closed ``/api/`` route (known or not) without a valid key; preflight passes."""
    path = request.path
    if (
        not path.startswith("/api/")
        or request.method == "OPTIONS"
        or path in OPEN_PATHS
        or path.startswith(OPEN_PREFIXES)
    ):
        return
    key = presented_key()
    if key is None or not key_is_valid(key, current_app.config["MEDSCAN_API_KEYS"]):
        raise Unauthorized("Unauthorized", www_authenticate=WWWAuthenticate("Bearer"))


def register_auth(app: Flask) -> None:
    """Close the API when keys are configured."""
    if app.config["MEDSCAN_API_KEYS"]:
        app.before_request(require_api_key)


def warn_if_open(app: Flask) -> None:
    """Warn that the API is open; the server calls it at start (CLI commands stay quiet)."""
    if not app.config["MEDSCAN_API_KEYS"]:
        app.logger.warning("MEDSCAN_API_KEYS is not set: the API is open to anyone")
