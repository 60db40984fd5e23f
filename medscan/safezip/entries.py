"""Opening a ZIP and naming its entries, before anything is inflated.

A ZIP is sniffed by its signature and refused when its entries overlap. Entry names are never
trusted and never used on disk: they are decoded (UTF-8 flag, else Cyrillic UTF-8 or cp866,
else cp437) and reported exactly as the archive has them. Absolute names and names that climb
out with ``..`` are unsafe; litter, symlinks, folders and repeated names are sorted out here.
"""

from __future__ import annotations

import bisect
import errno
import io
import os
import re
import stat
import struct
import unicodedata
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from medscan.safezip.errors import CorruptedZip, NotAZip

# Local file header (an archive's usual start), end of central directory (an empty archive) and
# the marker some tools put before the first header of a single-segment "split" archive.
# Self-extracting archives (an executable with a ZIP appended) are refused as not ZIPs.
SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
LOCAL_HEADER = struct.Struct("<4s22xHH")
_END_RECORD = struct.Struct("<4s8xI4xH")  # signature, central directory size, comment length
_ZIP64_END_RECORD_SIZE = 56
_ZIP64_LOCATOR_SIZE = 20
_CENTRAL_RECORD = struct.Struct("<4s4xH18xHHH12x")  # signature, flags, name/extra/comment lengths
FLAG_ENCRYPTED = 0x1
_FLAG_UTF8 = 0x800
_UTF8_BIT_IN_HIGH_BYTE = _FLAG_UTF8 >> 8  # flags are little-endian: the bit is in the 2nd byte
_DOS_FOLDER = 0x10
DUPLICATE_NAME = "duplicate entry name"
FOLDER_WITH_DATA = "folder entry with data"
UNSAFE_PATH = "unsafe path"
SYMLINK = "symlink"
_LITTER_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini", "dicomdir"})
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True, slots=True)
class Skipped:
    """A path that gives no file or no row, and why (a symlink, a CRC error, not DICOM...).

    ``path`` is its path in the archive; inside a nested ZIP, ``x.zip/inner``.
    """

    path: str
    reason: str


@dataclass(frozen=True)
class Span:
    """Bytes ``start`` to ``start + length`` of the file at ``path``, read as a file of their own.

    A whole archive, or a nested ZIP stored (not deflated) in its archive, opened in place
    instead of being copied out first.
    """

    path: Path
    start: int
    length: int

    @classmethod
    def whole(cls, path: Path | str) -> Span:
        """The whole file at ``path``."""
        return cls(Path(path), 0, os.path.getsize(path))

    def open(self, masks: dict[int, int] | None = None) -> BinaryIO:
        """A buffered, seekable reader of the span; the byte at each offset of ``masks`` reads
        as given there."""
        return io.BufferedReader(_SpanFile(self, masks or {}))  # type: ignore[return-value]


class _SpanFile(io.RawIOBase):
    """The raw reader of a `Span` (``os.preadv`` into the caller's buffer, masks applied)."""

    def __init__(self, span: Span, masks: dict[int, int]) -> None:
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
class Task:
    """An entry to extract; its index in the archive names it on disk."""

    info: zipfile.ZipInfo
    index: int

    @property
    def path(self) -> str:
        """The entry name as the archive has it."""
        return self.info.filename


@dataclass(frozen=True)
class Plan:
    tasks: list[Task]
    skipped: list[Skipped]
    litter: int

    @property
    def declared_bytes(self) -> int:
        """Bytes the entries to extract say they inflate to."""
        return sum(task.info.file_size for task in self.tasks)


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
def open_zip(source: Path | str | Span) -> Iterator[zipfile.ZipFile]:
    """Open a ZIP after sniffing its signature and refusing overlapping entries; names decoded.

    Names without the UTF-8 flag are re-decoded per entry from their raw bytes: UTF-8 when valid
    and Cyrillic (macOS writes UTF-8 without the flag), else cp866 when that gives Cyrillic text
    (Russian Windows), else cp437 as zipfile read them. A name flagged UTF-8 that is not UTF-8
    is decoded with replacement characters. ``orig_filename`` keeps zipfile's reading, which
    ``ZipFile.open`` compares with the local header.
    """
    span = source if isinstance(source, Span) else Span.whole(source)
    with span.open() as file:
        head = file.read(4)
    if head not in SIGNATURES:
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


def _zip_file(span: Span, stack: ExitStack) -> tuple[zipfile.ZipFile, set[int]]:
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
def _masked_zip(span: Span, masks: dict[int, int]) -> Iterator[zipfile.ZipFile]:
    """A ZipFile reading ``span`` with the bytes at the offsets of ``masks`` replaced."""
    with span.open(masks) as file, zipfile.ZipFile(file) as archive:
        yield archive


def _utf8_flag_masks(span: Span) -> tuple[dict[int, int], set[int]]:
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


def _check_overlaps(span: Span, archive: zipfile.ZipFile) -> None:
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
            header = file.read(LOCAL_HEADER.size)
            if len(header) < LOCAL_HEADER.size:
                continue
            signature, name_length, extra_length = LOCAL_HEADER.unpack(header)
            if signature != b"PK\x03\x04":
                continue
            end = info.header_offset + LOCAL_HEADER.size + name_length + extra_length
            if end + info.compress_size > bound:
                raise CorruptedZip(detail=f"entry {info.orig_filename!r} overlaps what follows it")


def _decode_name(info: zipfile.ZipInfo, *, misflagged: bool) -> str:
    """Decode an entry name as ``open_zip`` describes."""
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


def plan_entries(archive: zipfile.ZipFile, prefix: str) -> Plan:
    """Sort an archive's entries into files to write, skipped ones and litter.

    ``prefix`` ("" or "nested.zip/") starts the paths of skipped entries. Folder entries without
    data and litter are left out silently; an entry whose name repeats an earlier one's is
    skipped (one set look-up each, so repeats cost linear time).
    """
    infos = archive.infolist()
    tasks: list[Task] = []
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
            tasks.append(Task(info, index))
        if reason is not None:
            skipped.append(Skipped(prefix + name, reason))
        seen.add(name)
    return Plan(tasks, sorted(skipped, key=lambda item: item.path), litter)


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
