"""Flask extensions, created unbound; the app factory binds them."""

import sqlite3

import marshmallow as ma
from apispec.ext.marshmallow import MarshmallowPlugin, OpenAPIConverter
from flask_migrate import Migrate
from flask_smorest import Api
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine

# Stable constraint names, so migrations can alter them on PostgreSQL and SQLite alike.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING_CONVENTION))
migrate = Migrate(compare_type=True, render_as_batch=True)


class ErrorSchema(ma.Schema):
    """The one error body of the API (see medscan.errors)."""

    error = ma.fields.String(
        required=True,
        metadata={"description": "what went wrong", "example": "first_name: Missing data"},
    )
    details = ma.fields.Dict(
        metadata={
            "description": "validation messages by field",
            "example": {"first_name": ["Missing data for required field."]},
        }
    )


class Converter(OpenAPIConverter):
    """apispec's converter, writing a nullable nested schema so that generators type it."""

    def field2nullable(self, field: ma.fields.Field, ret: dict) -> dict:
        """A nullable reference as ``allOf: [$ref]`` with ``nullable`` (OpenAPI 3.0).

        apispec writes ``anyOf: [{type: object, nullable: true}, {$ref}]``, which client
        generators read as "an untyped object or the schema" rather than "the schema or null".
        """
        version = (self.openapi_version.major, self.openapi_version.minor)
        if field.allow_none and version == (3, 0) and ("$ref" in ret or "allOf" in ret):
            return {
                "allOf": ret.pop("allOf", None) or [{"$ref": ret.pop("$ref")}],
                "nullable": True,
            }
        return super().field2nullable(field, ret)


class SchemaPlugin(MarshmallowPlugin):
    """apispec's marshmallow plugin with ``Converter``."""

    Converter = Converter


class MedscanApi(Api):
    """flask-smorest's Api, documenting our error body instead of its own."""

    ERROR_SCHEMA = ErrorSchema

    def init_app(self, app, *, spec_kwargs=None) -> None:
        """Bind to ``app`` with a fresh ``SchemaPlugin`` (each app has its own document)."""
        spec_kwargs = {"marshmallow_plugin": SchemaPlugin(), **(spec_kwargs or {})}
        super().init_app(app, spec_kwargs=spec_kwargs)


api = MedscanApi()


@event.listens_for(Engine, "connect")
def _sqlite_foreign_keys(dbapi_connection, connection_record) -> None:
    """SQLite enforces foreign keys (and so ``ON DELETE CASCADE``) only when asked to."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
