"""``/api/docs``: Swagger UI over ``/api/openapi.json``, its assets served from a pip package.

flask-smorest's default Swagger UI loads its scripts from a CDN; here they come from
``swagger-ui-bundle-v2`` (Swagger UI 5, kept current by connexion's maintainers) so the page
works offline (hospital networks often have no internet).
"""

from flask import Blueprint, Flask, send_from_directory
from swagger_ui_bundle import swagger_ui_path

from medscan.auth import SECURITY_SCHEMES

ASSETS_URL = "/api/docs/assets/"

bp = Blueprint("apidocs", __name__)

OPENAPI_SETTINGS = {
    "API_TITLE": "medscan",
    "API_VERSION": "1",
    "OPENAPI_VERSION": "3.0.3",
    "OPENAPI_URL_PREFIX": "/api",
    "OPENAPI_JSON_PATH": "openapi.json",
    "OPENAPI_SWAGGER_UI_PATH": "/docs",
    "OPENAPI_SWAGGER_UI_URL": ASSETS_URL,
    # Links such as /api/docs#/scans/analyzeScan open that operation.
    "OPENAPI_SWAGGER_UI_CONFIG": {"deepLinking": True},
    "API_SPEC_OPTIONS": {
        "info": {
            "description": (
                "Chest-CT studies per patient, their analysis, and bulk triage reports. "
                'Every error body is `{"error": "..."}`. When MEDSCAN_API_KEYS is set, '
                "send `Authorization: Bearer <key>` or `X-API-Key: <key>`."
            )
        },
        "components": {"securitySchemes": SECURITY_SCHEMES},
        "security": [{name: []} for name in SECURITY_SCHEMES],
    },
}


@bp.get(f"{ASSETS_URL}<path:filename>")
def swagger_ui_asset(filename: str):
    """A Swagger UI script or stylesheet."""
    return send_from_directory(swagger_ui_path, filename, max_age=86400)


def register_apidocs(app: Flask) -> None:
    """Serve the Swagger UI assets (the page and the document are flask-smorest's)."""
    app.register_blueprint(bp)
