"""Multipart uploads spooled straight to disk, hashed while written, never held in memory.

Werkzeug spools file parts to anonymous files in ``$TMPDIR`` (often another filesystem, even
tmpfs), which would turn the final move into storage into a full copy. ``UploadRequest`` instead
writes each part into a named temp file in ``request.upload_dir`` (the storage directory for
scans, the work directory otherwise), computing SHA-256 and size on the way, so keeping the file
is one rename. Every temp file not renamed by the view is removed when the request ends.

A view taking an upload declares it with ``receives_uploads``: the folder, the body's limit and
the 413 naming that limit. The request reads the declaration of the view it is routed to when it
parses the body.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import re
import tempfile
import threading
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, TypeVar

from flask import Flask, Request, current_app, request
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.formparser import FormDataParser, MultiPartParser
from werkzeug.sansio.multipart import (
    Data,
    Epilogue,
    Field,
    File,
    MultipartDecoder,
    NeedData,
    State,
)

from medscan.analysis import analysis_service
from medscan.config import MIB
from medscan.server import BodyTimeout
from medscan.workspace import owned_prefix

ViewT = TypeVar("ViewT", bound=Callable[..., Any])
#: Pieces an upload's writer thread may lag behind the body (each up to ``UPLOAD_READ_SIZE``).
WRITE_BACKLOG = 4


class SpooledUpload:
    """A named temp file that keeps the size (and, when ``hashed``, the SHA-256) of what is
    written to it.

    Writes go to a thread of the upload's own, which hashes and writes each piece while the
    request thread receives the next one: page-cache writes into fresh memory cost as much as
    receiving here (bench/README.md, issue 16). Every other use of the file first waits until
    all of it is written, and raises the writer's error (a full disk) if there was one.
    """

    def __init__(self, directory: str | os.PathLike[str], *, hashed: bool = True) -> None:
        # The pid in the name lets sweep_stale_work_dirs remove what a killed worker left.
        fd, name = tempfile.mkstemp(dir=directory, prefix=owned_prefix("upload-"))
        self.path = Path(name)
        self.size = 0
        self._file = os.fdopen(fd, "w+b")
        self.persisted = False
        self._sha256 = hashlib.sha256() if hashed else None
        self._pending: queue.Queue[bytes | memoryview | None] = queue.Queue(WRITE_BACKLOG)
        self._writer: threading.Thread | None = None
        self._error: BaseException | None = None

    def write(self, data: bytes | memoryview) -> int:
        """Queue ``data`` (bytes, or a view of bytes: kept as is until written)."""
        if self._error is not None:
            raise self._error
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_pending, daemon=True)
            self._writer.start()
        self.size += len(data)
        self._pending.put(data)
        return len(data)

    def _write_pending(self) -> None:
        while (data := self._pending.get()) is not None:
            if self._error is not None:
                continue  # keep taking pieces so that write() never waits forever
            try:
                if self._sha256 is not None:
                    self._sha256.update(data)
                self._file.write(data)
            except BaseException as exc:  # raised by the next use of the upload
                self._error = exc

    def wait(self) -> None:
        """Wait until everything queued is written; raise the writer's error, if any."""
        if self._writer is not None:
            self._pending.put(None)
            self._writer.join()
            self._writer = None
        if self._error is not None:
            raise self._error

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            raise AttributeError("this upload was not hashed")
        self.wait()
        return self._sha256.hexdigest()

    def persist(self, target: Path) -> None:
        """Flush to stable storage and rename to ``target`` (same filesystem: atomic)."""
        self.wait()
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
        with contextlib.suppress(Exception):  # raised to the request already, if it mattered
            self.wait()
        if not self.persisted:
            self.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self._file.close()

    def __getattr__(self, name: str) -> Any:
        # read, seek, tell, flush, close... for werkzeug's FileStorage, once all is written
        if name.startswith("_"):
            raise AttributeError(name)
        self.wait()
        return getattr(self._file, name)


# Multipart bodies are read in 1 MiB pieces rather than werkzeug's 64 KiB: a 2 GB upload makes
# 16x fewer trips through gunicorn's body reader and the multipart decoder (bench/README.md).
UPLOAD_READ_SIZE = MIB


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


class StreamingMultiPartParser(MultiPartParser):
    """werkzeug's multipart parser, writing a file part's data straight from each read.

    werkzeug's decoder copies every read into its buffer, copies it out again as the part's
    data and copies that once more, which costs as much as receiving the body. Here, while a
    file part streams and a read holds no ``--boundary``, the read goes to the file as it is,
    all but its tail that may start the boundary, which stays in the decoder's buffer exactly
    as the decoder itself would leave it. Every other read goes through the decoder.
    """

    def parse(
        self, stream: Any, boundary: bytes, content_length: int | None
    ) -> tuple[MultiDict[str, str], MultiDict[str, FileStorage]]:
        decoder = MultipartDecoder(
            boundary, max_form_memory_size=self.max_form_memory_size, max_parts=self.max_form_parts
        )
        fields: list[tuple[str, str]] = []
        files: list[tuple[str, FileStorage]] = []
        part: Field | File | None = None
        container: Any = None
        field_size = 0
        while True:
            data = stream.read(self.buffer_size) or None
            if isinstance(part, File) and _write_file_data(decoder, data, container.write):
                continue
            decoder.receive_data(data)
            while not isinstance(event := decoder.next_event(), (Epilogue, NeedData)):
                if isinstance(event, Field):
                    part, field_size, container = event, 0, []
                elif isinstance(event, File):
                    part, container = event, self.start_file_streaming(event, content_length)
                elif isinstance(part, Field) and isinstance(event, Data):
                    field_size += len(event.data)
                    limit = self.max_form_memory_size
                    if limit is not None and field_size > limit:
                        raise RequestEntityTooLarge()
                    container.append(event.data)
                    if not event.more_data:
                        charset = self.get_part_charset(part.headers)
                        fields.append((part.name, b"".join(container).decode(charset, "replace")))
                elif isinstance(part, File) and isinstance(event, Data):
                    container.write(event.data)
                    if not event.more_data:
                        container.seek(0)
                        headers = part.headers
                        storage = FileStorage(container, part.filename, part.name, headers=headers)
                        files.append((part.name, storage))
            if data is None:
                return self.cls(fields), self.cls(files)


def _write_file_data(
    decoder: MultipartDecoder, data: bytes | None, write: Callable[[Any], Any]
) -> bool:
    """Write ``data`` of a streaming file part, less the tail that may start the boundary,
    as the decoder would; False (nothing done) unless the decoder is amid the part's data and
    no boundary is in sight."""
    buffer = decoder.buffer
    delimiter = b"\r\n--" + decoder.boundary
    limit = decoder.max_form_memory_size
    if (
        data is None
        or decoder.state is not State.DATA
        or len(data) < len(delimiter)
        or (limit is not None and len(buffer) + len(data) > limit)  # the decoder's 413
        or delimiter[2:] in data
        or delimiter[2:] in bytes(buffer) + data[: len(delimiter)]
    ):
        return False
    # Where a partial boundary may start, as werkzeug finds it: the last LF or the last CR,
    # whichever comes first, if within the last len(delimiter) bytes.
    tail = len(data) - len(delimiter)
    cut = min(
        (i for i in (data.rfind(b"\n", tail), data.rfind(b"\r", tail)) if i >= 0),
        default=len(data),
    )
    if buffer:
        write(bytes(buffer))
    write(memoryview(data)[:cut])
    decoder.buffer = bytearray(data[cut:])
    return True


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
        parser = StreamingMultiPartParser(
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
            field_mb = (self.max_form_memory_size or 0) / MIB
            raise FormTooLarge(
                f"Form too large: a text field holds at most {field_mb:g} MB and a form at "
                f"most {self.max_form_parts} parts"
            ) from None
        return stream, form, files


@dataclass(frozen=True)
class UploadPolicy:
    """How a view receives uploads: file parts spool ``into()``, the body stops at the
    ``max_mb`` setting (MB) with 413 ``too_large`` (``{max_mb}`` is the limit), SHA-256 or not."""

    into: Callable[[], str | os.PathLike[str]]
    max_mb: str
    too_large: str
    hashed: bool = True

    def max_bytes(self) -> int:
        """The largest body of the current app."""
        return current_app.config[self.max_mb] * MIB

    def body_too_large(self) -> BodyTooLarge:
        """The 413 naming the current app's limit."""
        return BodyTooLarge(self.too_large.format(max_mb=current_app.config[self.max_mb]))


def receives_uploads(
    *,
    into: Callable[[], str | os.PathLike[str]],
    max_mb: str,
    too_large: str,
    hashed: bool = True,
) -> Callable[[ViewT], ViewT]:
    """Declare that a view (a function, or a ``MethodView`` method) receives uploads (see
    ``UploadPolicy``); the view itself is unchanged, so the decorator may sit anywhere in its stack.

    ``hashed=False`` spares the SHA-256 (a third of the receive time at ~300 MiB/s) where
    nothing keeps it (bulk archives).
    """
    policy = UploadPolicy(into, max_mb, too_large, hashed)

    def declare(view: ViewT) -> ViewT:
        view.upload_policy = policy  # type: ignore[attr-defined]
        return view

    return declare


class UploadRequest(Request):
    """A request whose file parts become ``SpooledUpload`` files in ``upload_dir``, and whose
    body is held to the ``UploadPolicy`` of its view."""

    form_data_parser_class = LargeReadFormDataParser

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spooled_uploads: list[SpooledUpload] = []

    @cached_property
    def upload_policy(self) -> UploadPolicy | None:
        """What the view this request is routed to declared with ``receives_uploads``."""
        view = current_app.view_functions.get(self.endpoint)
        view_class = getattr(view, "view_class", None)
        if view_class is not None:  # a MethodView: the declaration is on the method
            view = getattr(view_class, self.method.lower(), None)
        return getattr(view, "upload_policy", None)

    @property
    def max_content_length(self) -> int | None:
        """The view's upload limit, else Flask's (``MAX_CONTENT_LENGTH``)."""
        if self.upload_policy is None:
            return super().max_content_length
        return self.upload_policy.max_bytes()

    @property
    def upload_dir(self) -> str:
        """Where file parts spool: the view's folder, else the work folder."""
        if self.upload_policy is None:
            return str(analysis_service().work_folder)
        return str(self.upload_policy.into())

    @property
    def hash_uploads(self) -> bool:
        """Whether the view's file parts are hashed (``SpooledUpload.sha256``)."""
        return self.upload_policy is None or self.upload_policy.hashed

    def _load_form_data(self) -> None:
        """Parse the body; a body over the view's limit is the 413 naming that limit."""
        try:
            super()._load_form_data()
        except RequestEntityTooLarge:
            if self.upload_policy is None:
                raise
            raise self.upload_policy.body_too_large() from None

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> SpooledUpload:
        upload = SpooledUpload(self.upload_dir, hashed=self.hash_uploads)
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
