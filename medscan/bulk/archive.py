"""Safe, memory-bounded ZIP handling for bulk runs and ZIP scans (no Flask: a plain library).

Entry names are never trusted and never used on disk: they are decoded (UTF-8 flag, else
Cyrillic UTF-8 or cp866, else cp437) and reported exactly as the archive has them, while each
entry is written to a name the server makes from its index. Absolute names and names that climb
out with ``..`` are refused. Limits are checked on the sizes the archive declares before any
work, and again on the bytes actually inflated, chunk by chunk. Nothing is ever held whole in
memory, and a limit violation or a full disk leaves nothing extracted behind.
"""

from __future__ import annotations

import bisect
import errno
import io
import os
import re
import shutil
import stat
import struct
import tempfile
import threading
import unicodedata
import zipfile
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO, TypeVar

from isal import isal_zlib

MIB = 1 << 20
CHUNK_SIZE = MIB
#: An entry is judged by ratio only once it inflates past this (blank CT slices reach ~600:1).
RATIO_MIN_BYTES = 100 * MIB
RATIO_MAX = 200

# Local file header (an archive's usual start), end of central directory (an empty archive) and
# the marker some tools put before the first header of a single-segment "split" archive.
# Self-extracting archives (an executable with a ZIP appended) are refused as not ZIPs.
_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_LOCAL_HEADER = struct.Struct("<4s22xHH")
_END_RECORD = struct.Struct("<4s8xI4xH")  # signature, central directory size, comment length
_ZIP64_END_RECORD_SIZE = 56
_ZIP64_LOCATOR_SIZE = 20
_CENTRAL_RECORD = struct.Struct("<4s4xH18xHHH12x")  # signature, flags, name/extra/comment lengths
_FLAG_ENCRYPTED = 0x1
_FLAG_UTF8 = 0x800
_UTF8_BIT_IN_HIGH_BYTE = _FLAG_UTF8 >> 8  # flags are little-endian: the bit is in the 2nd byte
_DOS_FOLDER = 0x10
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
#: Extracted files are named by entry index, this many to a directory.
FILES_PER_DIR = 1000
DUPLICATE_NAME = "duplicate entry name"
FOLDER_WITH_DATA = "folder entry with data"
UNSAFE_PATH = "unsafe path"
SYMLINK = "symlink"
# zipfile hands bzip2/LZMA the whole compressed read at once with no output bound: a few KB of
# bzip2 can inflate to gigabytes in memory before any check could run. Only these two stream safely.
_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_METHOD_NAMES = {9: "Deflate64", 12: "bzip2", 14: "LZMA", 93: "Zstandard", 95: "XZ", 98: "PPMd"}
_LITTER_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini", "dicomdir"})
_DRIVE = re.compile(r"^[A-Za-z]:")
_WORK_DIR = re.compile(r"medscan-(\d{1,9})-")  # work dirs and spooled uploads (medscan.uploads)
_T = TypeVar("_T")


class ArchiveError(Exception):
    """A ZIP the service refuses: ``status`` and ``message`` are what the client gets."""

    status: int = 400
    message: str = ""

    def __init__(self, message: str | None = None, *, detail: str | None = None) -> None:
        if message is not None:
            self.message = message
        self.detail = detail
        super().__init__(f"{self.message} ({detail})" if detail else self.message)


class NotAZip(ArchiveError):
    """No ZIP signature at the start of the file."""

    message = "Only .zip is accepted"


class CorruptedZip(ArchiveError):
    """A ZIP signature, but an unreadable central directory or overlapping entries."""

    message = "Corrupted ZIP"


class EmptyZip(ArchiveError):
    """No file entries other than OS litter."""

    message = "Empty ZIP"


class UnpackLimitExceeded(ArchiveError):
    """Too many bytes, too many entries or a ratio bomb."""

    status = 413

    def __init__(self, message: str) -> None:
        super().__init__(message)


class NotEnoughDiskSpace(ArchiveError):
    """The disk cannot hold what the archive unpacks to; the client may retry later."""

    status = 503
    message = "Not enough disk space"

    def __init__(self, *, detail: str | None = None, retry_after: int = 60) -> None:
        super().__init__(detail=detail)
        self.retry_after = retry_after


@dataclass(frozen=True)
class UnpackLimits:
    """Unpack limits; ``reserve_mb`` is the least disk kept free beyond what an archive declares."""

    max_unzipped_mb: int = 16384
    max_entries: int = 100000
    reserve_mb: int = 256


@dataclass(frozen=True, slots=True)
class ExtractedFile:
    """A file written to disk; ``path`` is its entry name exactly as its unit's ZIP has it.

    ``disk_path`` is a name the server made (from the entry's index), never the entry name.
    """

    path: str
    disk_path: Path


@dataclass(frozen=True, slots=True)
class EntryFailure:
    """An entry that could not be extracted (CRC error, encrypted, ...)."""

    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file that makes no row, and why (a symlink, an unsafe path, not DICOM...).

    ``path`` is its path in the archive; inside a nested ZIP, ``x.zip/inner``.
    """

    path: str
    reason: str


@dataclass(frozen=True)
class Unit:
    """The loose files of the archive (``path`` "") or one nested ZIP (its path in the archive).

    ``failure`` says why a nested ZIP failed as a whole; such a unit has no files, and its
    ``root`` is not its own.
    """

    path: str
    root: Path
    files: list[ExtractedFile]
    failure: str | None = None
    entry_failures: list[EntryFailure] = field(default_factory=list)


@dataclass(frozen=True)
class Extraction:
    """What ``extract_archive`` produced; every list is sorted by path."""

    units: list[Unit]
    skipped: list[Skipped]
    litter: int


@dataclass(frozen=True)
class _Span:
    """Bytes ``start`` to ``start + length`` of the file at ``path``, read as a file of their own.

    A whole archive, or a nested ZIP stored (not deflated) in its archive, opened in place
    instead of being copied out first.
    """

    path: Path
    start: int
    length: int

    @classmethod
    def whole(cls, path: Path | str) -> _Span:
        """The whole file at ``path``."""
        return cls(Path(path), 0, os.path.getsize(path))

    def open(self, masks: dict[int, int] | None = None) -> BinaryIO:
        """A buffered, seekable reader of the span; the byte at each offset of ``masks`` reads
        as given there."""
        return io.BufferedReader(_SpanFile(self, masks or {}))  # type: ignore[return-value]


class _SpanFile(io.RawIOBase):
    """The raw reader of a `_Span` (``os.preadv`` into the caller's buffer, masks applied)."""

    def __init__(self, span: _Span, masks: dict[int, int]) -> None:
        super().__init__()
        self._span = span
        self._masks = masks
        self._offsets = sorted(masks)
        self._position = 0
        self._fd = os.open(span.path, os.O_RDONLY)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self._span.length}
        if base[whence] + offset < 0:
            raise OSError(errno.EINVAL, f"negative seek position {base[whence] + offset}")
        self._position = base[whence] + offset
        return self._position

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        want = max(0, min(len(view), self._span.length - self._position))
        start = self._position
        count = os.preadv(self._fd, [view[:want]], self._span.start + start) if want else 0
        low = bisect.bisect_left(self._offsets, start)
        for offset in self._offsets[low : bisect.bisect_left(self._offsets, start + count)]:
            view[offset - start] = self._masks[offset]
        self._position += count
        return count

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


@dataclass(frozen=True, slots=True)
class _Task:
    """An entry to extract; its index in the archive names it on disk."""

    info: zipfile.ZipInfo
    index: int

    @property
    def path(self) -> str:
        """The entry name as the archive has it."""
        return self.info.filename


@dataclass(frozen=True)
class _Plan:
    tasks: list[_Task]
    skipped: list[Skipped]
    litter: int

    @property
    def declared_bytes(self) -> int:
        """Bytes the entries to extract say they inflate to."""
        return sum(task.info.file_size for task in self.tasks)


class _EntryFault(Exception):
    """An entry that cannot be read; the message is the reason reported for it."""


class _Cancelled(Exception):
    """Another worker failed: stop writing."""


class _Budget:
    """Entries and inflated bytes of one extraction, shared by its threads and nested archives."""

    def __init__(self, limits: UnpackLimits) -> None:
        self._limits = limits
        self._max_bytes = limits.max_unzipped_mb * MIB
        self._lock = threading.Lock()
        self._entries = 0
        self._inflated = 0

    def add_entries(self, count: int) -> None:
        """Count an archive's entries."""
        self._entries += count
        if self._entries > self._limits.max_entries:
            raise UnpackLimitExceeded(f"Too many ZIP entries. Max {self._limits.max_entries}")

    def check_declared(self, declared: int) -> None:
        """Fail fast when what an archive declares would not fit in what is left."""
        if self._inflated + declared > self._max_bytes:
            raise self._too_large()

    def add_bytes(self, count: int) -> None:
        """Count inflated bytes, failing as soon as the total passes the limit."""
        with self._lock:
            self._inflated += count
            over = self._inflated > self._max_bytes
        if over:
            raise self._too_large()

    def _too_large(self) -> UnpackLimitExceeded:
        return UnpackLimitExceeded(f"Unpacked ZIP too large. Max {self._limits.max_unzipped_mb} MB")


def safe_relpath(name: str) -> str | None:
    """An entry name as a relative '/'-separated path; None if it is empty or has ``..``."""
    name = _DRIVE.sub("", name.replace("\\", "/"))
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


def is_unsafe_name(name: str) -> bool:
    """An entry name that is empty, absolute, has a drive letter or a ``..`` component.

    Such names break the ZIP specification (APPNOTE 4.4.17) and are how archives try to write
    outside the folder they are unpacked into; their entries are skipped, never written.
    """
    return safe_relpath(name) is None or name.startswith(("/", "\\")) or bool(_DRIVE.match(name))


def is_litter(relpath: str) -> bool:
    """OS litter: under __MACOSX/, or .DS_Store, Thumbs.db, desktop.ini, DICOMDIR (any case)."""
    *folders, name = relpath.lower().split("/")
    return "__macosx" in folders or name in _LITTER_NAMES


@contextmanager
def _open_zip(source: Path | str | _Span) -> Iterator[zipfile.ZipFile]:
    """Open a ZIP after sniffing its signature and refusing overlapping entries; names decoded.

    Names without the UTF-8 flag are re-decoded per entry from their raw bytes: UTF-8 when valid
    and Cyrillic (macOS writes UTF-8 without the flag), else cp866 when that gives Cyrillic text
    (Russian Windows), else cp437 as zipfile read them. A name flagged UTF-8 that is not UTF-8
    is decoded with replacement characters. ``orig_filename`` keeps zipfile's reading, which
    ``ZipFile.open`` compares with the local header.
    """
    span = source if isinstance(source, _Span) else _Span.whole(source)
    with span.open() as file:
        head = file.read(4)
    if head not in _SIGNATURES:
        raise NotAZip(detail=f"{os.fspath(span.path)!r} at {span.start} starts with {head!r}")
    with ExitStack() as stack:
        try:
            archive, misflagged = _zip_file(span, stack)
        except (zipfile.BadZipFile, EOFError, ValueError, struct.error, NotImplementedError) as exc:
            raise CorruptedZip(detail=f"central directory unreadable: {exc}") from exc
        _check_overlaps(span, archive)
        for index, info in enumerate(archive.infolist()):
            info.filename = _decode_name(info, misflagged=index in misflagged)
        yield archive


def _zip_file(span: _Span, stack: ExitStack) -> tuple[zipfile.ZipFile, set[int]]:
    """Open the archive in ``stack`` as zipfile can read it; also which entries are misflagged.

    Entries whose names are flagged UTF-8 but are not are read through masks that clear the flag
    in their central directory records and local headers (see ``_utf8_flag_masks``).
    """
    try:
        return stack.enter_context(_masked_zip(span, {})), set()
    except UnicodeDecodeError:
        pass
    masks, misflagged = _utf8_flag_masks(span)
    with _masked_zip(span, masks) as archive:
        infos = archive.infolist()
        if len(infos) <= max(misflagged, default=-1):
            raise CorruptedZip(detail="central directory records cannot be counted")
        with span.open() as file:
            for index in misflagged:
                offset = infos[index].header_offset + 7  # the high byte of the local header flags
                if offset < 7:
                    continue  # before the file: _check_overlaps refuses it
                file.seek(offset)
                high = file.read(1)
                if high and high[0] & _UTF8_BIT_IN_HIGH_BYTE:
                    masks[offset] = high[0] & ~_UTF8_BIT_IN_HIGH_BYTE
    return stack.enter_context(_masked_zip(span, masks)), misflagged


@contextmanager
def _masked_zip(span: _Span, masks: dict[int, int]) -> Iterator[zipfile.ZipFile]:
    """A ZipFile reading ``span`` with the bytes at the offsets of ``masks`` replaced."""
    with span.open(masks) as file, zipfile.ZipFile(file) as archive:
        yield archive


def _utf8_flag_masks(span: _Span) -> tuple[dict[int, int], set[int]]:
    """Masks clearing the UTF-8 flag of central directory records whose names are not UTF-8.

    zipfile refuses the whole archive over one such name; read without the flag, the name's raw
    bytes come through (as cp437 text) and are decoded here. Returns the masks and the indices of
    those entries. The central directory is found as zipfile finds it: it ends where the (Zip64)
    end record starts.
    """
    with span.open() as file:
        size = file.seek(0, os.SEEK_END)
        tail_start = max(0, size - _END_RECORD.size - 0xFFFF)
        file.seek(tail_start)
        tail = file.read()
        end = tail.rfind(b"PK\x05\x06")
        if end < 0 or len(tail) < end + _END_RECORD.size:
            raise CorruptedZip(detail="no end of central directory record")
        _, directory_size, _ = _END_RECORD.unpack_from(tail, end)
        locator = end - _ZIP64_LOCATOR_SIZE
        if locator >= 0 and tail[locator : locator + 4] == b"PK\x06\x07":
            end = locator - _ZIP64_END_RECORD_SIZE
            (directory_size,) = struct.unpack_from("<Q", tail, end + 40)
        start = tail_start + end - directory_size
        if start < 0:
            raise CorruptedZip(detail="central directory starts before the file")
        file.seek(start)
        directory = file.read(directory_size)
    masks: dict[int, int] = {}
    misflagged: set[int] = set()
    position = index = 0
    while len(directory) >= position + _CENTRAL_RECORD.size:
        record = _CENTRAL_RECORD.unpack_from(directory, position)
        signature, flags, name_length, extra_length, comment_length = record
        if signature != b"PK\x01\x02":
            break
        name_start = position + _CENTRAL_RECORD.size
        if flags & _FLAG_UTF8 and not _is_utf8(directory[name_start : name_start + name_length]):
            masks[start + position + 9] = (flags >> 8) & ~_UTF8_BIT_IN_HIGH_BYTE
            misflagged.add(index)
        position = name_start + name_length + extra_length + comment_length
        index += 1
    return masks, misflagged


def _is_utf8(raw: bytes) -> bool:
    """Whether ``raw`` is valid UTF-8."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _check_overlaps(span: _Span, archive: zipfile.ZipFile) -> None:
    """Refuse entries whose data runs into the next entry or the central directory.

    CPython 3.11.7 does not check this, and overlapping entries are how "quoted" ZIP bombs inflate
    the same bytes many times. An entry without a local header signature is left to fail alone.
    """
    infos = sorted(archive.infolist(), key=lambda info: info.header_offset)
    bounds = [info.header_offset for info in infos[1:]] + [archive.start_dir]
    with span.open() as file:
        for info, bound in zip(infos, bounds, strict=False):  # no entries: one bound, unused
            if info.header_offset < 0:
                raise CorruptedZip(detail=f"entry {info.orig_filename!r} starts before the file")
            file.seek(info.header_offset)
            header = file.read(_LOCAL_HEADER.size)
            if len(header) < _LOCAL_HEADER.size:
                continue
            signature, name_length, extra_length = _LOCAL_HEADER.unpack(header)
            if signature != b"PK\x03\x04":
                continue
            end = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
            if end + info.compress_size > bound:
                raise CorruptedZip(detail=f"entry {info.orig_filename!r} overlaps what follows it")


def _decode_name(info: zipfile.ZipInfo, *, misflagged: bool) -> str:
    """Decode an entry name as ``_open_zip`` describes."""
    if info.flag_bits & _FLAG_UTF8:
        return info.filename
    raw = info.orig_filename.encode("cp437").split(b"\0", 1)[0]
    if raw.isascii():
        return info.filename
    if misflagged:
        return raw.decode("utf-8", "replace")
    for encoding in ("utf-8", "cp866"):
        try:
            text = unicodedata.normalize("NFC", raw.decode(encoding))
        except UnicodeDecodeError:
            continue
        if _is_cyrillic(text):
            return text
    return info.filename


def _is_cyrillic(text: str) -> bool:
    """True if the text has non-ASCII characters and all of them are Cyrillic letters (or №)."""
    foreign = [char for char in text if not char.isascii()]
    return bool(foreign) and all("\u0400" <= char <= "\u04ff" or char == "№" for char in foreign)


def _check_ratio(inflated: int, compressed: int) -> None:
    """Refuse an entry past RATIO_MIN_BYTES at a ratio over RATIO_MAX."""
    if inflated > RATIO_MIN_BYTES and inflated > RATIO_MAX * compressed:
        raise UnpackLimitExceeded(f"ZIP entry compression ratio over {RATIO_MAX}:1")


def _plan(archive: zipfile.ZipFile, budget: _Budget, prefix: str) -> _Plan:
    """Check the declared limits, then sort entries into files to write, skipped ones and litter.

    ``prefix`` ("" or "nested.zip/") starts the paths of skipped entries. Folder entries without
    data and litter are left out silently; an entry whose name repeats an earlier one's is
    skipped (one set look-up each, so repeats cost linear time).
    """
    infos = archive.infolist()
    budget.add_entries(len(infos))
    budget.check_declared(sum(info.file_size for info in infos))
    for info in infos:
        _check_ratio(info.file_size, info.compress_size)
    tasks: list[_Task] = []
    skipped: list[Skipped] = []
    litter = 0
    seen: set[str] = set()
    for index, info in enumerate(infos):
        name = info.filename
        reason = None
        relpath = safe_relpath(name)
        if _is_folder(info):
            reason = FOLDER_WITH_DATA if _carries_data(info) else None
        elif relpath is not None and is_litter(relpath):
            litter += 1
        elif name in seen:
            reason = DUPLICATE_NAME
        elif stat.S_ISLNK(info.external_attr >> 16):
            reason = SYMLINK
        elif is_unsafe_name(name):
            reason = UNSAFE_PATH
        else:
            tasks.append(_Task(info, index))
        if reason is not None:
            skipped.append(Skipped(prefix + name, reason))
        seen.add(name)
    return _Plan(tasks, sorted(skipped, key=lambda item: item.path), litter)


def _is_folder(info: zipfile.ZipInfo) -> bool:
    """A name ending in a slash, or an entry without data that has a folder mode or DOS bit."""
    if info.filename.endswith(("/", "\\")):
        return True
    mode = info.external_attr >> 16
    folder_bit = stat.S_ISDIR(mode) or info.external_attr & _DOS_FOLDER
    return bool(folder_bit) and not _carries_data(info)


def _carries_data(info: zipfile.ZipInfo) -> bool:
    """Whether an entry declares any content (a size, or the CRC of something non-empty)."""
    return info.file_size > 0 or info.CRC != 0


def _disk_path(root: Path, index: int) -> Path:
    """Where the entry at ``index`` is written: ``root/<index // FILES_PER_DIR>/<index>``."""
    return root / str(index // FILES_PER_DIR) / str(index)


def _inflate(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    budget: _Budget,
    turns: AbstractContextManager[object] | None = None,
) -> Iterator[bytes]:
    """Yield an entry's bytes in chunks, counted against the limits; a bad entry is an _EntryFault.

    CPython's zipfile reads no more than the declared sizes: data cut short or running past them
    fails the CRC check. Its inflated bytes thus never exceed the declared ones ``_plan`` checked;
    the counts here keep the limits true of the bytes actually inflated whatever the reader does.
    Threads sharing ``archive`` pass a lock as ``turns``: opening and closing an entry stream
    update the ZipFile's count of open streams, which zipfile does not guard (reads it does).
    """
    turns = turns or nullcontext()
    if info.flag_bits & _FLAG_ENCRYPTED:
        raise _EntryFault("encrypted")
    if info.compress_type not in _METHODS:
        method = _METHOD_NAMES.get(info.compress_type, "unknown")
        raise _EntryFault(f"unsupported compression method {info.compress_type} ({method})")
    inflated = 0
    try:
        with turns:
            stream = archive.open(info)
        _use_isal(stream)
        try:
            while chunk := stream.read(CHUNK_SIZE):
                inflated += len(chunk)
                _check_ratio(inflated, info.compress_size)
                budget.add_bytes(len(chunk))
                yield chunk
        finally:
            with turns:
                stream.close()
    except zipfile.BadZipFile as exc:
        crc = str(exc).startswith("Bad CRC-32")
        raise _EntryFault("CRC error" if crc else f"corrupted entry: {exc}") from exc
    except UnicodeDecodeError as exc:  # a local header name flagged UTF-8 that is not
        raise _EntryFault("corrupted entry: local header name is not UTF-8") from exc
    except (EOFError, zlib.error, isal_zlib.error) as exc:
        raise _EntryFault(f"corrupted compressed data: {exc or 'ends early'}") from exc
    except NotImplementedError as exc:  # a newer ZIP version, patched data, strong encryption
        raise _EntryFault(f"unsupported: {exc}") from exc


class _IsalExtFile(zipfile.ZipExtFile):
    """zipfile's entry stream, its CRC-32 computed by ISA-L (the same value, ~15x zlib's speed)."""

    def _update_crc(self, newdata: bytes) -> None:
        if self._expected_crc is None:
            return
        self._running_crc = isal_zlib.crc32(newdata, self._running_crc)
        if self._eof and self._running_crc != self._expected_crc:
            raise zipfile.BadZipFile(f"Bad CRC-32 for file {self.name!r}")


def _use_isal(stream: zipfile.ZipExtFile) -> None:
    """Inflate an entry and check its CRC with ISA-L (2-3x zlib's inflate speed, same results).

    zipfile makes the zlib decompressor in ``open`` and uses it only through ``decompress(data,
    max_length)``, ``unconsumed_tail``, ``eof`` and ``flush``, which ISA-L's object has too; both
    are swapped before the first read, so zipfile still bounds every read by the declared sizes
    and checks the CRC of what comes out.
    """
    if type(stream) is not zipfile.ZipExtFile or not hasattr(stream, "_decompressor"):
        return
    stream.__class__ = _IsalExtFile
    if stream._compress_type == zipfile.ZIP_DEFLATED:
        stream._decompressor = isal_zlib.decompressobj(-zlib.MAX_WBITS)


def _extract_entry(
    archive: zipfile.ZipFile,
    task: _Task,
    root: Path,
    budget: _Budget,
    cancel: threading.Event,
    turns: threading.Lock,
) -> ExtractedFile | EntryFailure:
    """Stream one entry to its disk path under ``root``; a bad entry leaves no file, only its
    failure. A full disk raises (the OSError), after removing the partial file.
    """
    target = _disk_path(root, task.index)
    try:
        target.parent.mkdir(exist_ok=True)
        with open(target, "xb") as out:
            for chunk in _inflate(archive, task.info, budget, turns):
                if cancel.is_set():
                    raise _Cancelled
                out.write(chunk)
    except _EntryFault as fault:
        _discard(target)
        return EntryFailure(task.path, str(fault))
    except OSError as exc:
        _discard(target)
        if exc.errno in _DISK_FULL:
            raise
        return EntryFailure(task.path, f"cannot write: {exc.strerror}")
    except BaseException:
        _discard(target)
        raise
    return ExtractedFile(task.path, target)


def _discard(path: Path) -> None:
    """Remove a partly written file, if any (the name itself may be what the disk refused)."""
    with suppress(OSError):
        path.unlink()


def _extract_entries(
    archive: zipfile.ZipFile,
    tasks: list[_Task],
    root: Path,
    budget: _Budget,
    workers: int,
    on_file: Callable[[ExtractedFile], None] | None,
) -> tuple[list[ExtractedFile], list[EntryFailure]]:
    """Extract ``tasks`` under ``root`` with ``workers`` threads sharing the open ``archive``.

    zipfile reads the entries of one ZipFile from several threads safely (its file position is
    locked); sharing it spares each thread a parse of the central directory and its copy of the
    ZipInfo list (about 50 MB per 100,000 entries). Largest entries go first so the threads
    finish together. The first error in any thread stops
    all of them (each deletes its partial file) and is raised once they have all been joined.
    ``on_file`` is called (in the extracting thread) with each file as soon as it is complete.

    ``tasks`` is consumed (left empty) and ``archive`` forgets its own list of entries, so that
    each entry's ZipInfo is freed once it is written (~40 MB per 100,000 entries otherwise held
    until the end, beside the headers read meanwhile).
    """
    pending = deque(sorted(tasks, key=lambda task: task.info.compress_size, reverse=True))
    count = len(tasks)
    tasks.clear()
    archive.filelist, archive.NameToInfo = [], {}  # ZipFile.open(ZipInfo) needs neither
    lock = threading.Lock()
    cancel = threading.Event()
    outcomes: list[ExtractedFile | EntryFailure] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            while not cancel.is_set():
                with lock:
                    task = pending.popleft() if pending else None
                if task is None:
                    return
                outcome = _extract_entry(archive, task, root, budget, cancel, lock)
                if on_file is not None and isinstance(outcome, ExtractedFile):
                    on_file(outcome)
                with lock:
                    outcomes.append(outcome)
        except _Cancelled:
            pass
        except BaseException as exc:  # handed to the calling thread below
            with lock:
                errors.append(exc)
            cancel.set()

    threads = [threading.Thread(target=work) for _ in range(min(max(workers, 1), count))]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except BaseException:
        cancel.set()
        for thread in threads:
            thread.join()
        raise
    if errors:
        raise errors[0]
    files = sorted((o for o in outcomes if isinstance(o, ExtractedFile)), key=lambda o: o.path)
    failures = sorted((o for o in outcomes if isinstance(o, EntryFailure)), key=lambda o: o.path)
    return files, failures


def _check_disk(directory: Path, declared: int, limits: UnpackLimits) -> None:
    """Refuse to start unless the disk holds the declared bytes plus max(reserve, 5%)."""
    needed = declared + max(limits.reserve_mb * MIB, declared // 20)
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise NotEnoughDiskSpace(detail=f"{free} bytes free in {directory}, {needed} needed")


def is_zip_file(file: ExtractedFile) -> bool:
    """A nested ZIP: named ``.zip`` (any case), or without an extension and with a ZIP signature.

    Signature alone is not enough for named files: .docx, .xlsx or .jar are ZIPs but documents.
    """
    suffix = PurePosixPath(file.path).suffix
    if suffix:
        return suffix.lower() == ".zip"
    with open(file.disk_path, "rb") as handle:
        return handle.read(4) in _SIGNATURES


def _partition(items: list[_T], predicate: Callable[[_T], bool]) -> tuple[list[_T], list[_T]]:
    """Split ``items`` into those matching ``predicate`` and the rest, keeping their order."""
    matching: list[_T] = []
    rest: list[_T] = []
    for item in items:
        (matching if predicate(item) else rest).append(item)
    return matching, rest


def _unpack_nested(
    path: str,
    source: Path | _Span,
    root: Path,
    budget: _Budget,
    limits: UnpackLimits,
    workers: int,
    on_file: Callable[[ExtractedFile], None] | None,
) -> tuple[Unit, list[Skipped], int]:
    """Unpack the nested ZIP at ``path`` (extracted to a file, or a span of its archive) into
    ``root``; ZIPs inside it stay plain files."""
    with ExitStack() as stack:
        try:
            archive = stack.enter_context(_open_zip(source))
        except NotAZip:
            return Unit(path, root, [], failure="not a ZIP file"), [], 0
        except CorruptedZip:
            return Unit(path, root, [], failure="corrupted nested ZIP"), [], 0
        plan = _plan(archive, budget, path + "/")
        if not plan.tasks and not plan.skipped:
            return Unit(path, root, [], failure="empty ZIP"), [], plan.litter
        if plan.tasks and all(task.info.flag_bits & _FLAG_ENCRYPTED for task in plan.tasks):
            return Unit(path, root, [], failure="encrypted"), plan.skipped, plan.litter
        _check_disk(root.parent, plan.declared_bytes, limits)
        root.mkdir()
        files, failures = _extract_entries(archive, plan.tasks, root, budget, workers, on_file)
    return Unit(path, root, files, entry_failures=failures), plan.skipped, plan.litter


def _is_stored_zip(task: _Task) -> bool:
    """An entry named ``.zip`` (any case) stored as is, unencrypted: readable in place."""
    info = task.info
    return (
        info.filename.lower().endswith(".zip")
        and info.compress_type == zipfile.ZIP_STORED
        and not info.flag_bits & _FLAG_ENCRYPTED
        and info.compress_size == info.file_size
    )


def _stored_span(
    archive: zipfile.ZipFile, span: _Span, info: zipfile.ZipInfo, budget: _Budget
) -> _Span | EntryFailure:
    """Where a stored entry's bytes lie in the archive, once its CRC is checked.

    ``ZipFile.open`` checks the local header as for extraction; the bytes are read once for the
    CRC (and counted as inflated, as if written out) instead of being copied to a file.
    """
    try:
        archive.open(info).close()
    except zipfile.BadZipFile as exc:
        return EntryFailure(info.filename, f"corrupted entry: {exc}")
    except UnicodeDecodeError:
        return EntryFailure(info.filename, "corrupted entry: local header name is not UTF-8")
    with span.open() as file:
        file.seek(info.header_offset)
        _, name_length, extra_length = _LOCAL_HEADER.unpack(file.read(_LOCAL_HEADER.size))
        start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
        file.seek(start)
        crc, left = 0, info.file_size
        while left and (chunk := file.read(min(CHUNK_SIZE, left))):
            budget.add_bytes(len(chunk))
            crc = isal_zlib.crc32(chunk, crc)
            left -= len(chunk)
    if left or crc != info.CRC:
        return EntryFailure(info.filename, "CRC error")
    return _Span(span.path, span.start + start, info.file_size)


def extract_archive(
    zip_path: Path | str,
    dest_dir: Path,
    limits: UnpackLimits,
    *,
    workers: int = 2,
    nested: bool = True,
    on_file: Callable[[ExtractedFile], None] | None = None,
) -> Extraction:
    """Extract a bulk archive into ``dest_dir`` safely, opening nested ZIPs one level deep.

    Loose files are written under ``dest_dir/archive``, the n-th nested ZIP's (in path order)
    under ``dest_dir/nested/<n>``, each to a name made from its entry's index (never from the
    entry name, which ``ExtractedFile.path`` keeps as is); a nested ZIP file is deleted once
    unpacked. The loose unit is listed
    only when it has files or failures. Entry faults become failures of their unit; a nested ZIP
    that cannot be opened, is empty or wholly encrypted is one unit failure. Limit and disk errors
    raise after every thread has stopped and everything written has been removed. ``nested=False``
    treats nested ZIPs as plain files, exactly what ``inspect_zip`` checked for a ZIP scan.
    ``on_file(file)`` is called from the extracting threads as each file is complete, so the
    caller can start on it (read its header) while the rest is still being inflated.

    Raises NotAZip, CorruptedZip, EmptyZip, UnpackLimitExceeded or NotEnoughDiskSpace.
    """
    span = _Span.whole(zip_path)
    budget = _Budget(limits)
    created: list[Path] = []
    try:
        with _open_zip(span) as archive:
            plan = _plan(archive, budget, "")
            if not plan.tasks and not plan.skipped:
                raise EmptyZip(detail=f"{span.path.name} holds only folders or OS litter")
            _check_disk(dest_dir, plan.declared_bytes, limits)
            loose_root = dest_dir / "archive"
            loose_root.mkdir()
            created.append(loose_root)
            in_place: list[_Task] = []
            tasks = plan.tasks  # consumed by _extract_entries
            if nested:
                in_place, tasks = _partition(plan.tasks, _is_stored_zip)
                plan.tasks.clear()
            files, failures = _extract_entries(
                archive, tasks, loose_root, budget, workers, on_file
            )
            spans = [(t.path, _stored_span(archive, span, t.info, budget)) for t in in_place]
        skipped, litter = list(plan.skipped), plan.litter
        units: list[Unit] = []
        if nested:
            copied, files = _partition(files, is_zip_file)
            broken, failures = _partition(failures, lambda f: f.path.lower().endswith(".zip"))
            broken += [source for _, source in spans if isinstance(source, EntryFailure)]
            archives = [(file.path, file.disk_path) for file in copied]
            archives += [(path, source) for path, source in spans if isinstance(source, _Span)]
            nested_base = dest_dir / "nested"
            units += [Unit(f.path, nested_base, [], failure=f.reason) for f in broken]
            if archives:
                nested_base.mkdir()
                created.append(nested_base)
            for number, (path, source) in enumerate(sorted(archives, key=lambda item: item[0])):
                unit, unit_skipped, unit_litter = _unpack_nested(
                    path, source, nested_base / str(number), budget, limits, workers, on_file
                )
                if isinstance(source, Path):
                    source.unlink(missing_ok=True)
                units.append(unit)
                skipped += unit_skipped
                litter += unit_litter
        if files or failures:
            units.append(Unit("", loose_root, files, entry_failures=failures))
    except BaseException as exc:
        for root in created:
            shutil.rmtree(root, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
            raise NotEnoughDiskSpace(detail=f"unpacking into {dest_dir}: {exc.strerror}") from exc
        raise
    return Extraction(
        sorted(units, key=lambda unit: unit.path), sorted(skipped, key=lambda s: s.path), litter
    )


def inspect_zip(
    zip_path: Path | str, limits: UnpackLimits, accept: Callable[[BinaryIO], bool]
) -> bool:
    """Check a ZIP scan against the unpack limits, writing nothing; True if ``accept`` takes one.

    Every entry extraction would write is inflated and discarded first, so a bomb is 413 whatever
    it holds; then ``accept`` gets a fresh stream of each entry that read cleanly, in archive order,
    until it says True. Litter, symlinks, unsafe names, repeated names and folder entries are never
    offered; nested ZIPs are not opened. Raises NotAZip, CorruptedZip or UnpackLimitExceeded.
    """
    budget = _Budget(limits)
    with _open_zip(zip_path) as archive:
        plan = _plan(archive, budget, "")
        readable = [task.info for task in plan.tasks if _drain(archive, task.info, budget)]
        return any(_offer(archive, info, accept) for info in readable)


def check_zip(zip_path: Path | str, limits: UnpackLimits) -> None:
    """The format checks of a bulk archive, from its central directory alone (nothing inflated).

    Raises NotAZip, CorruptedZip or EmptyZip. A declared size or entry count over the limits is
    left to the extraction, which refuses it as the run's own failure.
    """
    with _open_zip(zip_path) as archive:
        try:
            plan = _plan(archive, _Budget(limits), "")
        except UnpackLimitExceeded:
            return
        if not plan.tasks and not plan.skipped:
            raise EmptyZip(detail=f"{Path(zip_path).name} holds only folders or OS litter")


def _drain(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget) -> bool:
    """Inflate an entry and discard it; False if the entry is faulty."""
    try:
        for _ in _inflate(archive, info, budget):
            pass
    except _EntryFault:
        return False
    return True


def _offer(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, accept: Callable[[BinaryIO], bool]
) -> bool:
    """Ask ``accept`` about a fresh stream of the entry."""
    with archive.open(info) as stream:
        return accept(stream)


@contextmanager
def work_dir(base: Path) -> Iterator[Path]:
    """A fresh directory ``base/medscan-<pid>-<random>``, removed on exit whatever happens.

    Raises NotEnoughDiskSpace when the disk cannot hold even the directory.
    """
    try:
        base.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=f"medscan-{os.getpid()}-", dir=base))
    except OSError as exc:
        if exc.errno in _DISK_FULL:
            raise NotEnoughDiskSpace(detail=f"creating a work folder in {base}") from exc
        raise
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def sweep_stale_work_dirs(base: Path) -> int:
    """Remove ``medscan-<pid>-*`` work directories and spooled upload files under ``base`` whose
    owning process is gone; return how many.

    A recycled pid keeps a stale entry until that process ends too (erring towards keeping).
    """
    if not base.is_dir():
        return 0
    removed = 0
    for entry in base.iterdir():
        match = _WORK_DIR.match(entry.name)
        if not match or entry.is_symlink() or _alive(int(match[1])):
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed += 1
    return removed


def _alive(pid: int) -> bool:
    """Whether a process exists (one we may not signal counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ZipScan:
    """A ZIP scan read in place, entry by entry, never extracted (see `open_zip_scan`).

    ``entries`` are the entries ``extract_archive(nested=False)`` would write, by name.
    """

    def __init__(self, archive: zipfile.ZipFile, tasks: list[_Task], budget: _Budget) -> None:
        self._archive = archive
        self._budget = budget
        self._turns = threading.Lock()
        self.entries = {task.path: task.info for task in tasks}

    def read_clean(
        self, read: Callable[[str, BinaryIO, int], _T], workers: int = 2
    ) -> list[tuple[str, _T]]:
        """``read(name, stream, size)`` of each entry that inflates cleanly: the files
        extraction would keep (CRC errors, encrypted entries and unsupported methods are left
        out). Each entry is first inflated within the limits and discarded, then handed to
        `read` as a fresh stream; `workers` threads share the archive, results keep entry
        order. Raises UnpackLimitExceeded, or what `read` raises.
        """

        def one(name: str, info: zipfile.ZipInfo) -> tuple[str, _T] | None:
            try:
                for _ in _inflate(self._archive, info, self._budget, self._turns):
                    pass
            except _EntryFault:
                return None
            with self.open(name) as stream:
                return name, read(name, stream, info.file_size)

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = [pool.submit(one, name, info) for name, info in self.entries.items()]
            try:
                results = [future.result() for future in futures]
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        return [result for result in results if result is not None]

    @contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        """A seekable stream of the entry `name` (one of `entries`), closed on exit."""
        with self._turns:  # opening and closing count the ZipFile's streams, unguarded
            stream = self._archive.open(self.entries[name])
        try:
            yield stream  # type: ignore[misc]
        finally:
            with self._turns:
                stream.close()


@contextmanager
def open_zip_scan(zip_path: Path | str, limits: UnpackLimits) -> Iterator[ZipScan]:
    """Open a ZIP scan for reading in place, with the checks and name rules of extraction.

    Nothing is written to disk. Raises NotAZip, CorruptedZip or UnpackLimitExceeded.
    """
    budget = _Budget(limits)
    with _open_zip(zip_path) as archive:
        yield ZipScan(archive, _plan(archive, budget, "").tasks, budget)
