"""The streaming multipart parser gives what werkzeug's gives; spooled uploads write in a thread."""

from __future__ import annotations

import errno
import io
import random
from pathlib import Path

import pytest
from werkzeug.formparser import MultiPartParser

from medscan.uploads import SpooledUpload, StreamingMultiPartParser


class RandomReads:
    """A body read back in pieces of random size up to what is asked."""

    def __init__(self, body: bytes, seed: int) -> None:
        self._body = io.BytesIO(body)
        self._rng = random.Random(seed)

    def read(self, size: int) -> bytes:
        return self._body.read(self._rng.randint(1, size))


def random_body(rng: random.Random, boundary: bytes) -> bytes:
    """One to three file or text parts whose data is rich in CR, LF and pieces of the boundary."""
    pieces = [b"\r", b"\n", b"-", b"\r\n--" + boundary[:-1], b"\r\n--", rng.randbytes(1)]
    parts = []
    for index in range(rng.randint(1, 3)):
        size = rng.choice([0, 1, 70, 4000, rng.randint(0, 200_000)])
        data = b"".join(
            rng.choice(pieces) if rng.random() < 0.3 else rng.randbytes(rng.randint(1, 50))
            for _ in range(size // 25 + 1)
        )[:size]
        if rng.random() < 0.6:
            head = f'name="f{index}"; filename="a{index}.zip"\r\nContent-Type: application/zip'
        else:
            head, data = f'name="t{index}"', data[:100]
        parts.append(b"Content-Disposition: form-data; " + head.encode() + b"\r\n\r\n" + data)
    body = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
    body += b"--" + boundary + b"--\r\n"
    return body[: rng.randint(0, len(body))] if rng.random() < 0.1 else body


def parsed(parser: MultiPartParser, body: bytes, boundary: bytes, seed: int) -> object:
    """Fields and files (name, file name, type, content) or the error, of one parse."""
    try:
        form, files = parser.parse(RandomReads(body, seed), boundary, len(body))
    except Exception as exc:  # compared as text
        return repr(exc)
    return sorted(form.items(multi=True)), [
        (name, file.filename, file.content_type, file.stream.read())
        for name, file in files.items(multi=True)
    ]


def test_streaming_parser_parses_as_werkzeug_does(tmp_path: Path):
    rng = random.Random(16)
    spooled: list[SpooledUpload] = []

    def spool(**_: object) -> SpooledUpload:
        spooled.append(SpooledUpload(tmp_path))
        return spooled[-1]

    for trial in range(400):
        boundary = b"b" + rng.randbytes(rng.randint(1, 20)).hex().encode()
        body = random_body(rng, boundary)
        options = {
            "buffer_size": rng.choice([64, 1000, 65536, 2**20]),
            "max_form_memory_size": rng.choice([None, 100_000, 4 * 2**20]),
        }
        ours = parsed(StreamingMultiPartParser(spool, **options), body, boundary, trial)
        theirs = parsed(MultiPartParser(**options), body, boundary, trial)
        assert ours == theirs, trial
    for upload in spooled:
        upload.discard()
    assert list(tmp_path.iterdir()) == []


def test_spooled_upload_hashes_and_sizes_what_its_thread_wrote(tmp_path: Path):
    upload = SpooledUpload(tmp_path)
    pieces = [random.Random(n).randbytes(300_000) for n in range(10)]
    for piece in pieces:
        upload.write(memoryview(piece)[1:])
    upload.seek(0)
    assert upload.read() == b"".join(piece[1:] for piece in pieces)
    assert upload.size == 10 * 299_999
    upload.discard()
    assert not upload.path.exists()


def test_a_write_error_in_the_thread_is_raised_by_the_next_use(tmp_path: Path, monkeypatch):
    upload = SpooledUpload(tmp_path)

    def full(data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(upload._file, "write", full)
    upload.write(b"x")
    with pytest.raises(OSError) as raised:
        upload.wait()
    assert raised.value.errno == errno.ENOSPC
    with pytest.raises(OSError):
        upload.write(b"y")
    upload.discard()
    assert not upload.path.exists()
