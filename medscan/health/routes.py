"""``GET /api/health``, for load balancers and container healthchecks."""

from contextlib import suppress

from flask import current_app
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import ServiceUnavailable

from medscan.api import Blueprint
from medscan.errors import DATABASE_RETRY_AFTER_S
from medscan.extensions import db
from medscan.health.schemas import HealthSchema

bp = Blueprint("health", __name__, url_prefix="/api", description="Service health")


@bp.get("/health")
@bp.doc(operationId="getHealth", security=[])
@bp.response(200, HealthSchema)
@bp.alt_response(503, message="Database unavailable", description="The database cannot be reached")
def health():
    """Answer 200 when the database answers a trivial query, else 503."""
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        with suppress(SQLAlchemyError):
            db.session.rollback()
        # One line, no traceback: health is polled every few seconds during an outage.
        current_app.logger.warning("Health check: database unreachable (%s)", type(exc).__name__)
        unavailable = ServiceUnavailable("Database unavailable", retry_after=DATABASE_RETRY_AFTER_S)
        raise unavailable from None
    return {"status": "ok", "database": "ok"}
