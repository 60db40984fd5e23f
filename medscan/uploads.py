"""Multipart uploads spooled straight to disk, hashed while written, never held in memory.

Werkzeug spools file parts to anonymous files in ``$TMPDIR`` (often another filesystem, even
tmpfs), which would turn the final move into storage into a full copy. ``UploadRequest`` instead
writes each part into a named temp file in ``request.upload_dir`` (the storage directory for
scans, the work directory otherwise), computing SHA-256 and size on the way, so keeping the file
is one rename. Every temp file not renamed by the view is removed when the request ends.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import unicodedata
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from flask import Flask, Request, current_app, request
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.formparser import FormDataParser, MultiPartParser

from medscan.server import BodyTimeout
from medscan.workspace import owned_prefix


class SpooledUpload:
    """A named temp file that keeps the size (and, when ``hashed``, the SHA-256) of what is
    written to it."""

    def __init__(self, directory: str | os.PathLike[str], *, hashed: bool = True) -> None:
        # The pid in the name lets sweep_stale_work_dirs remove what a killed worker left.
        fd, name = tempfile.mkstemp(dir=directory, prefix=owned_prefix("upload-"))
        self.path = Path(name)
        self.size = 0
        self._file = os.fdopen(fd, "w+b")
        self.persisted = False
        self._sha256 = hashlib.sha256() if hashed else None

    def write(self, data: bytes) -> int:
        if self._sha256 is not None:
            self._sha256.update(data)
        self.size += len(data)
        return self._file.write(data)

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            raise AttributeError("this upload was not hashed")
        return self._sha256.hexdigest()

    def persist(self, target: Path) -> None:
        """Flush to stable storage and rename to ``target`` (same filesystem: atomic)."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.path, target)
        self.persisted = True

    def discard(self) -> None:
        """Delete the temp file unless it was persisted, and close it.

        Deleted first: on a full disk, closing fails to flush what is still buffered, and that
        must neither keep the file nor stop the request from being answered.
        """
        if not self.persisted:
            self.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self._file.close()

    def __getattr__(self, name: str) -> Any:
        # read, seek, tell, flush, close... for werkzeug's FileStorage
        return getattr(self._file, name)


# Multipart bodies are read in 1 MiB pieces rather than werkzeug's 64 KiB: a 2 GB upload makes
# 16x fewer trips through gunicorn's body reader and the multipart decoder (bench/README.md).
UPLOAD_READ_SIZE = 2**20


class FormTooLarge(HTTPException):
    """A text field or the number of parts over its own limit (not the body-size limit)."""

    code = 413


class BodyTooLarge(RequestEntityTooLarge):
    """The body itself over the request's limit, told apart from the form's own limits."""


class _BodyReads:
    """The body stream, its over-the-limit error marked as ``BodyTooLarge``."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        try:
            return self._stream.read(size)
        except RequestEntityTooLarge:
            raise BodyTooLarge() from None


class LargeReadFormDataParser(FormDataParser):
    """werkzeug's form parser, reading multipart bodies ``UPLOAD_READ_SIZE`` bytes at a time.

    Its 413 for a text field over ``max_form_memory_size`` or more than ``max_form_parts``
    parts becomes ``FormTooLarge`` naming those limits, so that the upload endpoints' own 413
    (the file size) is kept for bodies over their size.
    """

    def _parse_multipart(self, stream, mimetype, content_length, options):
        boundary = options.get("boundary", "").encode("ascii")
        if not boundary:
            raise ValueError("Missing boundary")
        parser = MultiPartParser(
            stream_factory=self.stream_factory,
            max_form_memory_size=self.max_form_memory_size,
            max_form_parts=self.max_form_parts,
            cls=self.cls,
            buffer_size=UPLOAD_READ_SIZE,
        )
        try:
            form, files = parser.parse(_BodyReads(stream), boundary, content_length)
        except BodyTooLarge:
            raise
        except RequestEntityTooLarge:
            field_mb = (self.max_form_memory_size or 0) / 2**20
            raise FormTooLarge(
                f"Form too large: a text field holds at most {field_mb:g} MB and a form at "
                f"most {self.max_form_parts} parts"
            ) from None
        return stream, form, files


class UploadRequest(Request):
    """A request whose file parts become ``SpooledUpload`` files in ``upload_dir``."""

    form_data_parser_class = LargeReadFormDataParser
    upload_dir: str | None = None
    hash_uploads = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spooled_uploads: list[SpooledUpload] = []

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> SpooledUpload:
        upload = SpooledUpload(
            self.upload_dir or current_app.config["MEDSCAN_WORK_DIR"], hashed=self.hash_uploads
        )
        self.spooled_uploads.append(upload)
        return upload


RAW_FILE_NAME = re.compile(r';\s*filename="(.*?)"\s*(?=;|$)')


def client_file_name(file: FileStorage) -> str:
    """The client's file name without any directory part or control characters ("" if none).

    Browsers send Windows paths with raw backslashes (``C:\\dir\\x.dcm``), which werkzeug reads
    as escapes, so the quoted name is taken from the part's header as sent when it is there.
    """
    raw = RAW_FILE_NAME.search(file.headers.get("Content-Disposition", ""))
    sent = raw.group(1).replace('\\"', '"') if raw else file.filename
    name = PureWindowsPath(PurePosixPath(sent or "").name).name
    return "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()[:255]


def receive_uploads_into(
    directory: str | os.PathLike[str], max_mb: int, *, hashed: bool = True
) -> None:
    """Before the body is read: spool file parts into ``directory``; cap the body at ``max_mb``.

    ``hashed=False`` spares the SHA-256 (a third of the receive time at ~300 MiB/s) where
    nothing keeps it (bulk archives).
    """
    request.upload_dir = str(directory)
    request.hash_uploads = hashed
    request.max_content_length = max_mb * 2**20


def discard_uploads(exc: BaseException | None = None) -> None:
    """Remove whatever this request spooled and did not keep."""
    for upload in request.spooled_uploads:
        upload.discard()


def register_uploads(app: Flask) -> None:
    """Use ``UploadRequest``, clean its files up after every request, time stalled bodies out."""
    app.request_class = UploadRequest
    app.wsgi_app = BodyTimeout(app.wsgi_app, app.config["MEDSCAN_BODY_TIMEOUT_S"])
    # werkzeug refuses (413) any single read larger than the text-field memory limit.
    app.config["MAX_FORM_MEMORY_SIZE"] = max(
        app.config.get("MAX_FORM_MEMORY_SIZE") or 0, 2 * UPLOAD_READ_SIZE
    )
    app.teardown_request(discard_uploads)
