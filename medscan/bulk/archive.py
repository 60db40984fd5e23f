"""Safe, memory-bounded ZIP handling for bulk runs and ZIP scans (no Flask: a plain library).

Entry names are never trusted: they are decoded (UTF-8 flag, else Cyrillic UTF-8 or cp866, else
cp437), made relative and refused when they climb out with ``..``. Limits are checked on the sizes
the archive declares before any work, and again on the bytes actually inflated, chunk by chunk.
Nothing is ever held whole in memory, and a limit violation leaves nothing extracted behind.
"""

from __future__ import annotations

import errno
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO, TypeVar

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
_FLAG_ENCRYPTED = 0x1
_FLAG_UTF8 = 0x800
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


@dataclass(frozen=True)
class ExtractedFile:
    """A file written to disk; ``path`` is relative to its unit, '/'-separated."""

    path: str
    disk_path: Path


@dataclass(frozen=True)
class EntryFailure:
    """An entry that could not be extracted (CRC error, encrypted, ...)."""

    path: str
    reason: str


@dataclass(frozen=True)
class Skipped:
    """A file that makes no row, and why (a symlink, an unsafe path, not DICOM...).

    ``path`` is its path in the archive; inside a nested ZIP, ``x.zip/inner``.
    """

    path: str
    reason: str


@dataclass(frozen=True)
class Unit:
    """The loose files of the archive (``path`` "") or one nested ZIP (its path in the archive).

    ``failure`` says why a nested ZIP failed as a whole; such a unit has no files and no ``root``
    on disk.
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
class _Task:
    info: zipfile.ZipInfo
    path: str


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


def is_litter(relpath: str) -> bool:
    """OS litter: under __MACOSX/, or .DS_Store, Thumbs.db, desktop.ini, DICOMDIR (any case)."""
    *folders, name = relpath.lower().split("/")
    return "__macosx" in folders or name in _LITTER_NAMES


def open_zip(path: Path | str) -> zipfile.ZipFile:
    """Open a ZIP after sniffing its signature and refusing overlapping entries; names decoded.

    Names without the UTF-8 flag are re-decoded per entry from their raw bytes: UTF-8 when valid
    and Cyrillic (macOS writes UTF-8 without the flag), else cp866 when that gives Cyrillic text
    (Russian Windows), else cp437 as zipfile read them. ``orig_filename`` keeps zipfile's reading,
    which ``ZipFile.open`` compares with the local header.
    """
    with open(path, "rb") as file:
        head = file.read(4)
    if head not in _SIGNATURES:
        raise NotAZip(detail=f"{os.fspath(path)!r} starts with {head!r}")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, ValueError, struct.error, NotImplementedError) as exc:
        raise CorruptedZip(detail=f"central directory unreadable: {exc}") from exc
    try:
        _check_overlaps(path, archive)
    except BaseException:
        archive.close()
        raise
    for info in archive.infolist():
        info.filename = _decode_name(info)
    archive.NameToInfo = {info.filename: info for info in archive.infolist()}
    return archive


def _check_overlaps(path: Path | str, archive: zipfile.ZipFile) -> None:
    """Refuse entries whose data runs into the next entry or the central directory.

    CPython 3.11.7 does not check this, and overlapping entries are how "quoted" ZIP bombs inflate
    the same bytes many times. An entry without a local header signature is left to fail alone.
    """
    infos = sorted(archive.infolist(), key=lambda info: info.header_offset)
    bounds = [info.header_offset for info in infos[1:]] + [archive.start_dir]
    with open(path, "rb") as file:
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


def _decode_name(info: zipfile.ZipInfo) -> str:
    """Decode an entry name as ``open_zip`` describes."""
    if info.flag_bits & _FLAG_UTF8:
        return info.filename
    raw = info.orig_filename.encode("cp437").split(b"\0", 1)[0]
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

    ``prefix`` ("" or "nested.zip/") starts the paths of skipped entries. Files keep archive order
    for name collisions, so the first of two entries that sanitize alike keeps the plain name.
    """
    infos = archive.infolist()
    budget.add_entries(len(infos))
    budget.check_declared(sum(info.file_size for info in infos))
    for info in infos:
        _check_ratio(info.file_size, info.compress_size)
    wanted: list[tuple[zipfile.ZipInfo, str]] = []
    skipped: list[Skipped] = []
    litter = 0
    for info in infos:
        mode = info.external_attr >> 16
        if info.filename.replace("\\", "/").endswith("/") or stat.S_ISDIR(mode):
            continue
        relpath = safe_relpath(info.filename)
        if relpath is not None and is_litter(relpath):
            litter += 1
        elif stat.S_ISLNK(mode):
            skipped.append(Skipped(prefix + info.filename, "symlink"))
        elif relpath is None:
            skipped.append(Skipped(prefix + info.filename, "unsafe path"))
        else:
            wanted.append((info, relpath))
    paths = _unique_paths([relpath for _, relpath in wanted])
    tasks = [_Task(info, path) for (info, _), path in zip(wanted, paths, strict=True)]
    return _Plan(tasks, sorted(skipped, key=lambda item: item.path), litter)


def _unique_paths(paths: list[str]) -> list[str]:
    """Make paths distinct from each other and from the folders they need (``a/b~2.dcm``)."""
    taken = {str(parent) for path in paths for parent in PurePosixPath(path).parents}
    unique = []
    for path in paths:
        candidate, number = path, 1
        while candidate in taken:
            number += 1
            pure = PurePosixPath(path)
            candidate = str(pure.with_name(f"{pure.stem}~{number}{pure.suffix}"))
        taken.add(candidate)
        unique.append(candidate)
    return unique


def _inflate(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget) -> Iterator[bytes]:
    """Yield an entry's bytes in chunks, counted against the limits; a bad entry is an _EntryFault.

    CPython's zipfile reads no more than the declared sizes: data cut short or running past them
    fails the CRC check. Its inflated bytes thus never exceed the declared ones ``_plan`` checked;
    the counts here keep the limits true of the bytes actually inflated whatever the reader does.
    """
    if info.flag_bits & _FLAG_ENCRYPTED:
        raise _EntryFault("encrypted")
    if info.compress_type not in _METHODS:
        method = _METHOD_NAMES.get(info.compress_type, "unknown")
        raise _EntryFault(f"unsupported compression method {info.compress_type} ({method})")
    inflated = 0
    try:
        with archive.open(info) as stream:
            while chunk := stream.read(CHUNK_SIZE):
                inflated += len(chunk)
                _check_ratio(inflated, info.compress_size)
                budget.add_bytes(len(chunk))
                yield chunk
    except zipfile.BadZipFile as exc:
        crc = str(exc).startswith("Bad CRC-32")
        raise _EntryFault("CRC error" if crc else f"corrupted entry: {exc}") from exc
    except (EOFError, zlib.error) as exc:
        raise _EntryFault(f"corrupted compressed data: {exc or 'ends early'}") from exc
    except NotImplementedError as exc:  # a newer ZIP version, patched data, strong encryption
        raise _EntryFault(f"unsupported: {exc}") from exc


def _extract_entry(
    archive: zipfile.ZipFile, task: _Task, root: Path, budget: _Budget, cancel: threading.Event
) -> ExtractedFile | EntryFailure:
    """Stream one entry to ``root/task.path``; a bad entry leaves no file, only its failure."""
    target = root / task.path
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "xb") as out:
            for chunk in _inflate(archive, task.info, budget):
                if cancel.is_set():
                    raise _Cancelled
                out.write(chunk)
    except _EntryFault as fault:
        _discard(target)
        return EntryFailure(task.path, str(fault))
    except OSError as exc:
        _discard(target)
        if exc.errno == errno.ENOSPC:
            raise NotEnoughDiskSpace(detail=f"writing {task.path!r}: {exc.strerror}") from exc
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
    zip_path: Path,
    tasks: list[_Task],
    root: Path,
    budget: _Budget,
    workers: int,
    on_file: Callable[[ExtractedFile], None] | None,
) -> tuple[list[ExtractedFile], list[EntryFailure]]:
    """Extract ``tasks`` under ``root`` with ``workers`` threads, each with its own ZipFile handle.

    Largest entries go first so the threads finish together. The first error in any thread stops
    all of them (each deletes its partial file) and is raised once they have all been joined.
    ``on_file`` is called (in the extracting thread) with each file as soon as it is complete.
    """
    pending = iter(sorted(tasks, key=lambda task: task.info.compress_size, reverse=True))
    lock = threading.Lock()
    cancel = threading.Event()
    outcomes: list[ExtractedFile | EntryFailure] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with zipfile.ZipFile(zip_path) as archive:
                while not cancel.is_set():
                    with lock:
                        task = next(pending, None)
                    if task is None:
                        return
                    outcome = _extract_entry(archive, task, root, budget, cancel)
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

    threads = [threading.Thread(target=work) for _ in range(min(max(workers, 1), len(tasks)))]
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
    file: ExtractedFile,
    root: Path,
    budget: _Budget,
    limits: UnpackLimits,
    workers: int,
    on_file: Callable[[ExtractedFile], None] | None,
) -> tuple[Unit, list[Skipped], int]:
    """Unpack an extracted nested ZIP into ``root``; ZIPs inside it stay plain files."""
    try:
        with open_zip(file.disk_path) as archive:
            plan = _plan(archive, budget, file.path + "/")
    except NotAZip:
        return Unit(file.path, root, [], failure="not a ZIP file"), [], 0
    except CorruptedZip:
        return Unit(file.path, root, [], failure="corrupted nested ZIP"), [], 0
    if not plan.tasks and not plan.skipped:
        return Unit(file.path, root, [], failure="empty ZIP"), [], plan.litter
    if plan.tasks and all(task.info.flag_bits & _FLAG_ENCRYPTED for task in plan.tasks):
        return Unit(file.path, root, [], failure="encrypted"), plan.skipped, plan.litter
    _check_disk(root.parent, plan.declared_bytes, limits)
    root.mkdir()
    files, failures = _extract_entries(file.disk_path, plan.tasks, root, budget, workers, on_file)
    return Unit(file.path, root, files, entry_failures=failures), plan.skipped, plan.litter


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

    Loose files go to ``dest_dir/archive``, the n-th nested ZIP (in path order) to
    ``dest_dir/nested/<n>``; a nested ZIP file is deleted once unpacked. The loose unit is listed
    only when it has files or failures. Entry faults become failures of their unit; a nested ZIP
    that cannot be opened, is empty or wholly encrypted is one unit failure. Limit and disk errors
    raise after every thread has stopped and everything written has been removed. ``nested=False``
    treats nested ZIPs as plain files, exactly what ``inspect_zip`` checked for a ZIP scan.
    ``on_file(file)`` is called from the extracting threads as each file is complete, so the
    caller can start on it (read its header) while the rest is still being inflated.

    Raises NotAZip, CorruptedZip, EmptyZip, UnpackLimitExceeded or NotEnoughDiskSpace.
    """
    zip_path = Path(zip_path)
    budget = _Budget(limits)
    created: list[Path] = []
    try:
        with open_zip(zip_path) as archive:
            plan = _plan(archive, budget, "")
        if not plan.tasks and not plan.skipped:
            raise EmptyZip(detail=f"{zip_path.name} holds only folders or OS litter")
        _check_disk(dest_dir, plan.declared_bytes, limits)
        loose_root = dest_dir / "archive"
        loose_root.mkdir()
        created.append(loose_root)
        files, failures = _extract_entries(
            zip_path, plan.tasks, loose_root, budget, workers, on_file
        )
        skipped, litter = list(plan.skipped), plan.litter
        units: list[Unit] = []
        if nested:
            archives, files = _partition(files, is_zip_file)
            broken, failures = _partition(failures, lambda f: f.path.lower().endswith(".zip"))
            units += [Unit(f.path, loose_root / f.path, [], failure=f.reason) for f in broken]
            if archives:
                nested_base = dest_dir / "nested"
                nested_base.mkdir()
                created.append(nested_base)
            for number, file in enumerate(archives):
                unit, unit_skipped, unit_litter = _unpack_nested(
                    file, nested_base / str(number), budget, limits, workers, on_file
                )
                file.disk_path.unlink(missing_ok=True)
                units.append(unit)
                skipped += unit_skipped
                litter += unit_litter
        if files or failures:
            units.append(Unit("", loose_root, files, entry_failures=failures))
    except BaseException:
        for root in created:
            shutil.rmtree(root, ignore_errors=True)
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
    until it says True. Litter, symlinks and unsafe names are never offered; nested ZIPs are not
    opened. Raises NotAZip, CorruptedZip or UnpackLimitExceeded.
    """
    budget = _Budget(limits)
    with open_zip(zip_path) as archive:
        plan = _plan(archive, budget, "")
        readable = [task.info for task in plan.tasks if _drain(archive, task.info, budget)]
        return any(_offer(archive, info, accept) for info in readable)


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
    """A fresh directory ``base/medscan-<pid>-<random>``, removed on exit whatever happens."""
    base.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"medscan-{os.getpid()}-", dir=base))
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
