"""The API's conventions: the Api and its one error body, the Blueprint, parsing, lookups."""

from __future__ import annotations

import json
import unicodedata
import uuid
from typing import Any, NoReturn, TypeVar
from urllib.parse import quote

import flask_smorest
import marshmallow as ma
from apispec.ext.marshmallow import MarshmallowPlugin, OpenAPIConverter
from flask import Response, abort, current_app, request, url_for
from flask_smorest import Api
from webargs.flaskparser import FlaskParser
from webargs.flaskparser import abort as abort_invalid
from werkzeug.datastructures import CombinedMultiDict
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.routing import BaseConverter

from medscan.extensions import db

ModelT = TypeVar("ModelT")


def error_body(message: str, details: Any = None) -> dict[str, Any]:
    """The one error shape of the API."""
    body: dict[str, Any] = {"error": message}
    if details:
        body["details"] = details
    return body


def _validation_details(messages: dict[str, Any]) -> dict[str, Any]:
    """Flatten webargs' ``{location: {field: [...]}}`` into ``{field: [...]}``."""
    details: dict[str, Any] = {}
    for location_messages in messages.values():
        if isinstance(location_messages, dict):
            details.update(location_messages)
        else:
            details["_schema"] = location_messages
    return details


def _summary(details: dict[str, Any]) -> str:
    """A one-line human reading of validation details, e.g. ``first_name: Missing data``."""
    parts = []
    for field, messages in details.items():
        text = messages[0] if isinstance(messages, list) and messages else messages
        if isinstance(text, dict):
            text = "invalid value"
        parts.append(str(text) if field == "_schema" else f"{field}: {text}")
    return "; ".join(parts)


class ErrorSchema(ma.Schema):
    """The one error body of the API: ``{"error": message, "details"?: {field: [messages]}}``."""

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
    """flask-smorest's Api with the API's one error body.

    The body is documented (``ERROR_SCHEMA``) and rendered (``handle_http_exception``) here.
    """

    ERROR_SCHEMA = ErrorSchema

    def init_app(self, app, *, spec_kwargs=None) -> None:
        """Bind to ``app`` with a fresh ``SchemaPlugin`` (each app has its own document)."""
        spec_kwargs = {"marshmallow_plugin": SchemaPlugin(), **(spec_kwargs or {})}
        super().init_app(app, spec_kwargs=spec_kwargs)

    def handle_http_exception(self, error: HTTPException) -> Response:
        """Render an HTTP error as the error body, keeping its headers; a 500 rolls back too.

        Headers such as ``Allow`` and ``Retry-After`` stay; a crash (500) also rolls the session
        back. flask-smorest registers this for every ``HTTPException`` when it binds the app, so the
        contract holds whatever the order of the app factory's steps.
        """
        if isinstance(error, InternalServerError):
            db.session.rollback()
        data = getattr(error, "data", None) or {}
        details = _validation_details(data["messages"]) if "messages" in data else None
        if details:
            message = _summary(details)
        elif data.get("message"):
            message = data["message"]
        elif error.description and error.description != type(error).description:
            message = error.description
        else:
            message = error.name
        response = error.get_response()
        response.set_data(current_app.json.dumps(error_body(message, details)))
        response.mimetype = "application/json"
        for name, value in (data.get("headers") or {}).items():
            response.headers[name] = value
        return response


api = MedscanApi()

JSON_REQUIRED = "Content-Type must be application/json"


def invalid_json(reason: str) -> NoReturn:
    """400 with ``details.json`` naming why the body is refused."""
    abort_invalid(400, messages={"json": [f"Invalid JSON body: {reason}."]})


class ArgumentsParser(FlaskParser):
    """webargs parser answering 400 (not 422) and 415 for a JSON body sent as something else.

    Location ``multipart`` reads text fields and files of a multipart body together, so one
    schema describes (and documents) the whole upload form.
    """

    DEFAULT_VALIDATION_STATUS = 400
    __location_map__ = {**FlaskParser.__location_map__, "multipart": "load_multipart"}

    def load_multipart(self, req, schema) -> Any:
        """A multipart body's text fields and files, as one mapping."""
        return self._makeproxy(CombinedMultiDict([req.form, req.files]), schema)

    def _raw_load_json(self, req) -> Any:
        """The JSON body; hostile JSON (too deep, huge integers, lone surrogates) is invalid."""
        if not req.is_json:
            abort(415, JSON_REQUIRED)
        try:
            data = super()._raw_load_json(req)
            # Strings must be storable text: a lone surrogate ("\ud800") cannot be encoded.
            json.dumps(data, ensure_ascii=False).encode()
        except RecursionError:
            invalid_json("nested too deeply")
        except UnicodeEncodeError:
            invalid_json("a string holds a lone surrogate")
        except json.JSONDecodeError:
            raise
        except ValueError:  # an integer over Python's 4300-digit conversion limit
            invalid_json("a number is too long")
        return data


# What any request with a body may also answer (medscan/server.py, CONTRACT.md Conventions).
BODY_RESPONSES = {
    408: ("Request body timeout", "No byte of the body for MEDSCAN_BODY_TIMEOUT_S"),
    503: ("Server busy", "No thread free for a body, or not enough disk space; see Retry-After"),
}


OCTET_STREAM = "application/octet-stream"
BINARY = {"type": "string", "format": "binary"}
LOCATION = {"Location": {"schema": {"type": "string"}, "description": "the created resource"}}


class Blueprint(flask_smorest.Blueprint):
    """A flask-smorest blueprint that validates with ``ArgumentsParser``.

    Views taking a body (JSON or multipart) document the answers every body can get, and every
    documented error answer has the error body unless it names another schema.
    """

    ARGUMENTS_PARSER = ArgumentsParser()
    DEFAULT_LOCATION_CONTENT_TYPE_MAPPING = {
        **flask_smorest.Blueprint.DEFAULT_LOCATION_CONTENT_TYPE_MAPPING,
        "multipart": "multipart/form-data",
    }

    def arguments(self, schema, *, location: str = "json", **kwargs: Any):
        """flask-smorest's; a JSON or multipart body also documents ``BODY_RESPONSES``."""
        parse = super().arguments(schema, location=location, **kwargs)
        if location not in ("json", "multipart"):
            return parse

        def parse_and_document(view):
            view = parse(view)
            for status, (message, description) in BODY_RESPONSES.items():
                view = self.alt_response(status, message=message, description=description)(view)
            return view

        return parse_and_document

    def alt_response(
        self, status_code, response=None, *, schema=None, message: str | None = None, **kwargs
    ):
        """flask-smorest's, with ``message``: the error's text, shown as its example.

        ``message`` is also the description unless one is given.
        """
        if response is None and schema is None and int(status_code) >= 400:
            schema = ErrorSchema
        if message is not None:
            kwargs.setdefault("description", message)
            kwargs.setdefault("example", {"error": message})
        return super().alt_response(status_code, response, schema=schema, **kwargs)

    def file_response(self, content_type: str, description: str, **kwargs):
        """Document a 200 download of ``content_type``, also served as octet-stream on request.

        Binary types are ``format: binary``; text types (CSV) are strings. Code generators that
        know no vendor type (``openapi-python-client`` reads JSON, text and octet-stream only)
        take the octet-stream entry and hand the body over as a file.
        """
        schema = {"type": "string"} if content_type.startswith("text/") else BINARY
        document = self.response(
            200, schema, content_type=content_type, description=description, **kwargs
        )
        if content_type == OCTET_STREAM:
            return document
        octet_stream = {"content": {OCTET_STREAM: {"schema": BINARY}}}
        return lambda view: self.doc(responses={200: octet_stream})(document(view))


class IdConverter(BaseConverter):
    """A path id (``<id:scan_id>``): any one segment, documented as a UUID.

    A segment that is not a UUID still reaches the view, which answers the resource's 404.
    """


api.register_converter(
    IdConverter,
    lambda converter: {
        "type": "string",
        "format": "uuid",
        "example": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
    },
)


def download_type(content_type: str) -> str:
    """``content_type``, or octet-stream for a client that prefers it (``Accept``)."""
    return request.accept_mimetypes.best_match([content_type, OCTET_STREAM]) or content_type


def parse_uuid(raw: str) -> uuid.UUID | None:
    """``raw`` as a UUID (any case, with or without hyphens), or None if it is not one."""
    try:
        return uuid.UUID(raw)
    except (ValueError, AttributeError, TypeError):
        return None


def get_or_404(model: type[ModelT], raw_id: str, message: str) -> ModelT:
    """The row with this id; a malformed id answers the same 404 as an unknown one."""
    row_id = parse_uuid(raw_id)
    row = db.session.get(model, row_id) if row_id is not None else None
    if row is None:
        abort(404, message)
    return row


def location_of(endpoint: str, **values: Any) -> dict[str, str]:
    """A ``Location`` header for a created resource."""
    return {"Location": url_for(endpoint, **values, _external=False)}


def content_disposition(file_name: str) -> str:
    """RFC 6266 attachment header: an ASCII fallback plus the exact UTF-8 name.

    The fallback keeps what survives of the name in ASCII (``Ivanov KT.dcm`` stays); a name with
    nothing left before its extension (``Иванов КТ.dcm``) falls back to ``scan.dcm``.
    """
    fallback = unicodedata.normalize("NFKD", file_name).encode("ascii", "ignore").decode()
    fallback = fallback.replace("\\", "_").replace('"', "_").strip()
    stem, dot, suffix = fallback.rpartition(".")
    if not dot:
        stem, suffix = fallback, ""
    if not any(ch.isalnum() for ch in stem):
        fallback = f"scan{dot}{suffix}"
    header = f'attachment; filename="{fallback}"'
    if fallback != file_name:
        header += f"; filename*=UTF-8''{quote(file_name, safe='')}"
    return header
