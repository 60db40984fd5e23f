"""Extraction within a budget: limits checked on the declared sizes first, then on every chunk.

Limits are checked on the sizes the archive declares before any work, and again on the bytes
actually inflated, chunk by chunk. Each entry is written to a name made from its index, never
from its name. Nothing is ever held whole in memory, and a limit violation or a full disk
leaves nothing extracted behind.
"""

from __future__ import annotations

import os
import shutil
import threading
import zipfile
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO, TypeVar

from isal import isal_zlib

from medscan.config import MIB
from medscan.safezip.entries import (
    FLAG_ENCRYPTED,
    LOCAL_HEADER,
    SIGNATURES,
    Plan,
    Skipped,
    Span,
    Task,
    open_zip,
    plan_entries,
)
from medscan.safezip.errors import (
    DISK_FULL,
    CorruptedZip,
    EmptyZip,
    NotAZip,
    NotEnoughDiskSpace,
    UnpackLimitExceeded,
)

CHUNK_SIZE = MIB
#: An entry is judged by ratio only once it inflates past this (blank CT slices reach ~600:1).
RATIO_MIN_BYTES = 100 * MIB
RATIO_MAX = 200
#: Extracted files are named by entry index, this many to a directory.
FILES_PER_DIR = 1000
# zipfile hands bzip2/LZMA the whole compressed read at once with no output bound: a few KB of
# bzip2 can inflate to gigabytes in memory before any check could run. Only these two stream safely.
_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_METHOD_NAMES = {9: "Deflate64", 12: "bzip2", 14: "LZMA", 93: "Zstandard", 95: "XZ", 98: "PPMd"}
_T = TypeVar("_T")


@dataclass(frozen=True)
class UnpackLimits:
    """Unpack limits; ``reserve_mb`` is the least disk kept free beyond what an archive declares."""

    max_unzipped_mb: int = 16384
    max_entries: int = 100000
    reserve_mb: int = 256


@dataclass(frozen=True, slots=True)
class ExtractedFile:
    """A file written to disk; ``path`` is its entry name exactly as its unit's ZIP has it.

    On disk it is named from the entry's ``index`` under its unit's ``root`` (one Path shared by
    the unit's files), never from the entry name: ``disk_name`` and ``disk_path`` make the name.
    """

    path: str
    root: Path
    index: int

    @property
    def disk_name(self) -> str:
        """Where the file is: ``root/<index // FILES_PER_DIR>/<index>``."""
        return f"{self.root}/{self.index // FILES_PER_DIR}/{self.index}"

    @property
    def disk_path(self) -> Path:
        """``disk_name`` as a Path."""
        return Path(self.disk_name)


@dataclass(frozen=True)
class Unit:
    """The loose files of the archive (``path`` "") or one nested ZIP (its path in the archive).

    ``failure`` says why a nested ZIP failed as a whole; such a unit has no files, and its
    ``root`` is not its own. ``entry_failures`` are its entries that could not be extracted.
    """

    path: str
    root: Path
    files: list[ExtractedFile]
    failure: str | None = None
    entry_failures: list[Skipped] = field(default_factory=list)


@dataclass(frozen=True)
class Extraction:
    """What ``extract_archive`` produced; every list is sorted by path."""

    units: list[Unit]
    skipped: list[Skipped]
    litter: int


class EntryFault(Exception):
    """An entry that cannot be read; the message is the reason reported for it."""


class _Cancelled(Exception):
    """Another worker failed: stop writing."""


class Budget:
    """Entries and inflated bytes of one extraction, shared by its threads and nested archives."""

    def __init__(self, limits: UnpackLimits) -> None:
        self._limits = limits
        self._max_bytes = limits.max_unzipped_mb * MIB
        self._lock = threading.Lock()
        self._entries = 0
        self._inflated = 0

    def admit(self, archive: zipfile.ZipFile, prefix: str = "") -> Plan:
        """Check an archive's declared entries against what is left, then plan them.

        The entries are counted and the sizes and ratios they declare checked; the plan is
        ``plan_entries``'s. Nothing is inflated.
        """
        infos = archive.infolist()
        with self._lock:  # nested ZIPs are admitted from several threads
            self._entries += len(infos)
            entries, inflated = self._entries, self._inflated
        if entries > self._limits.max_entries:
            raise UnpackLimitExceeded(f"Too many ZIP entries. Max {self._limits.max_entries}")
        if inflated + sum(info.file_size for info in infos) > self._max_bytes:
            raise self._too_large()
        for info in infos:
            check_ratio(info.file_size, info.compress_size)
        return plan_entries(archive, prefix)

    def add_bytes(self, count: int) -> None:
        """Count inflated bytes, failing as soon as the total passes the limit."""
        with self._lock:
            self._inflated += count
            over = self._inflated > self._max_bytes
        if over:
            raise self._too_large()

    def _too_large(self) -> UnpackLimitExceeded:
        """The refusal of an archive over ``max_unzipped_mb``."""
        return UnpackLimitExceeded(f"Unpacked ZIP too large. Max {self._limits.max_unzipped_mb} MB")


def check_ratio(inflated: int, compressed: int) -> None:
    """Refuse an entry past RATIO_MIN_BYTES at a ratio over RATIO_MAX."""
    if inflated > RATIO_MIN_BYTES and inflated > RATIO_MAX * compressed:
        raise UnpackLimitExceeded(f"ZIP entry compression ratio over {RATIO_MAX}:1")


def inflate(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    budget: Budget,
    turns: AbstractContextManager[object] | None = None,
) -> Iterator[bytes]:
    """Yield an entry's bytes in chunks, counted against the limits; a bad entry is an EntryFault.

    CPython's zipfile reads no more than the declared sizes: data cut short or running past them
    fails the CRC check. Its inflated bytes thus never exceed the declared ones ``Budget.admit``
    checked; the counts here keep the limits true of the bytes actually inflated whatever the
    reader does.
    Threads sharing ``archive`` pass a lock as ``turns``: opening and closing an entry stream
    update the ZipFile's count of open streams, which zipfile does not guard (reads it does).
    """
    turns = turns or nullcontext()
    if info.flag_bits & FLAG_ENCRYPTED:
        raise EntryFault("encrypted")
    if info.compress_type not in _METHODS:
        method = _METHOD_NAMES.get(info.compress_type, "unknown")
        raise EntryFault(f"unsupported compression method {info.compress_type} ({method})")
    inflated = 0
    try:
        with turns:
            stream = archive.open(info)
        _use_isal(stream)
        try:
            while chunk := stream.read(CHUNK_SIZE):
                inflated += len(chunk)
                check_ratio(inflated, info.compress_size)
                budget.add_bytes(len(chunk))
                yield chunk
        finally:
            with turns:
                stream.close()
    except zipfile.BadZipFile as exc:
        crc = str(exc).startswith("Bad CRC-32")
        raise EntryFault("CRC error" if crc else f"corrupted entry: {exc}") from exc
    except UnicodeDecodeError as exc:  # a local header name flagged UTF-8 that is not
        raise EntryFault("corrupted entry: local header name is not UTF-8") from exc
    except (EOFError, zlib.error, isal_zlib.error) as exc:
        raise EntryFault(f"corrupted compressed data: {exc or 'ends early'}") from exc
    except NotImplementedError as exc:  # a newer ZIP version, patched data, strong encryption
        raise EntryFault(f"unsupported: {exc}") from exc


class _IsalExtFile(zipfile.ZipExtFile):
    """zipfile's entry stream, its CRC-32 computed by ISA-L (the same value, ~15x zlib's speed)."""

    def _update_crc(self, newdata: bytes) -> None:
        """zipfile's CRC-32 check, computed by ISA-L."""
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
    task: Task,
    root: Path,
    budget: Budget,
    cancel: threading.Event,
    turns: threading.Lock,
) -> ExtractedFile | Skipped:
    """Stream one entry to its disk path under ``root``; a bad entry leaves only its failure.

    A bad entry leaves no file. A full disk raises (the OSError), after removing the partial
    file.
    """
    file = ExtractedFile(task.path, root, task.index)
    target = file.disk_name
    try:
        with _create(target) as out:
            for chunk in inflate(archive, task.info, budget, turns):
                if cancel.is_set():
                    raise _Cancelled
                out.write(chunk)
    except EntryFault as fault:
        _discard(target)
        return Skipped(task.path, str(fault))
    except OSError as exc:
        _discard(target)
        if exc.errno in DISK_FULL:
            raise
        return Skipped(task.path, f"cannot write: {exc.strerror}")
    except BaseException:
        _discard(target)
        raise
    return file


def _create(name: str) -> BinaryIO:
    """A new file at ``name``; its folder is made by the first file there (one mkdir per
    FILES_PER_DIR files, not one per file)."""
    try:
        return open(name, "xb")  # noqa: SIM115 (the caller closes it)
    except FileNotFoundError:
        with suppress(FileExistsError):  # another thread made it meanwhile
            os.mkdir(os.path.dirname(name))
        return open(name, "xb")  # noqa: SIM115


def _discard(path: str) -> None:
    """Remove a partly written file, if any (the name itself may be what the disk refused)."""
    with suppress(OSError):
        os.unlink(path)


def _extract_entries(
    archive: zipfile.ZipFile,
    tasks: list[Task],
    root: Path,
    budget: Budget,
    workers: int,
    on_file: Callable[[ExtractedFile], None] | None,
    cancel: threading.Event | None = None,
) -> tuple[list[ExtractedFile], list[Skipped]]:
    """Extract ``tasks`` under ``root`` with ``workers`` threads sharing the open ``archive``.

    zipfile reads the entries of one ZipFile from several threads safely (its file position is
    locked); sharing it spares each thread a parse of the central directory and its copy of the
    ZipInfo list (about 50 MB per 100,000 entries). Largest entries go first so the threads
    finish together. The first error in any thread stops
    all of them (each deletes its partial file) and is raised once they have all been joined.
    ``on_file`` is called (in the extracting thread) with each file as soon as it is complete.
    ``cancel``, shared with other extractions running meanwhile, stops them all at once.

    ``tasks`` is consumed (left empty) and ``archive`` forgets its own list of entries, so that
    each entry's ZipInfo is freed once it is written (~40 MB per 100,000 entries otherwise held
    until the end, beside the headers read meanwhile).
    """
    pending = deque(sorted(tasks, key=lambda task: task.info.compress_size, reverse=True))
    count = len(tasks)
    tasks.clear()
    archive.filelist, archive.NameToInfo = [], {}  # ZipFile.open(ZipInfo) needs neither
    lock = threading.Lock()
    cancel = cancel or threading.Event()
    outcomes: list[ExtractedFile | Skipped] = []
    errors: list[BaseException] = []

    def work() -> None:
        """Extract tasks, one at a time, until none is left or the extraction is cancelled."""
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

    _run_threads(work, min(max(workers, 1), count), cancel, errors)
    files = sorted((o for o in outcomes if isinstance(o, ExtractedFile)), key=lambda o: o.path)
    failures = sorted((o for o in outcomes if isinstance(o, Skipped)), key=lambda o: o.path)
    return files, failures


def _run_threads(
    work: Callable[[], None], count: int, cancel: threading.Event, errors: list[BaseException]
) -> None:
    """Run ``work`` in ``count`` threads and join them; then raise the first of the ``errors``
    they recorded. Interrupted meanwhile, ``cancel`` is set and every thread joined first."""
    threads = [threading.Thread(target=work) for _ in range(count)]
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
    with open(file.disk_name, "rb") as handle:
        return handle.read(4) in SIGNATURES


def _partition(items: list[_T], predicate: Callable[[_T], bool]) -> tuple[list[_T], list[_T]]:
    """Split ``items`` into those matching ``predicate`` and the rest, keeping their order."""
    matching: list[_T] = []
    rest: list[_T] = []
    for item in items:
        (matching if predicate(item) else rest).append(item)
    return matching, rest


def _unpack_nested(
    path: str,
    source: Path | Span,
    root: Path,
    budget: Budget,
    limits: UnpackLimits,
    workers: int,
    on_file: Callable[[ExtractedFile], None] | None,
    cancel: threading.Event,
) -> tuple[Unit, list[Skipped], int]:
    """Unpack the nested ZIP at ``path`` into ``root``; ZIPs inside it stay plain files.

    ``source`` is the nested ZIP extracted to a file, or a span of its archive.
    """
    with ExitStack() as stack:
        try:
            archive = stack.enter_context(open_zip(source))
        except NotAZip:
            return Unit(path, root, [], failure="not a ZIP file"), [], 0
        except CorruptedZip:
            return Unit(path, root, [], failure="corrupted nested ZIP"), [], 0
        plan = budget.admit(archive, path + "/")
        if not plan.tasks and not plan.skipped:
            return Unit(path, root, [], failure="empty ZIP"), [], plan.litter
        if plan.tasks and all(task.info.flag_bits & FLAG_ENCRYPTED for task in plan.tasks):
            return Unit(path, root, [], failure="encrypted"), plan.skipped, plan.litter
        _check_disk(root.parent, plan.declared_bytes, limits)
        root.mkdir()
        files, failures = _extract_entries(
            archive, plan.tasks, root, budget, workers, on_file, cancel
        )
    return Unit(path, root, files, entry_failures=failures), plan.skipped, plan.litter


def _unpack_all_nested(
    archives: list[tuple[str, Path | Span]],
    base: Path,
    budget: Budget,
    limits: UnpackLimits,
    workers: int,
    on_file: Callable[[ExtractedFile], None] | None,
) -> list[tuple[Unit, list[Skipped], int]]:
    """Unpack the nested ZIPs ``archives`` (in path order, the n-th into ``base/<n>``) with
    ``workers`` threads; a nested ZIP extracted to a file is deleted once unpacked.

    With as many ZIPs as threads or more, each thread unpacks one ZIP after another on its
    own, so none waits for another's last entries; fewer ZIPs share the threads. The first
    error stops every thread and is raised once all have stopped.
    """
    pending = deque(enumerate(archives))
    outcomes: dict[int, tuple[Unit, list[Skipped], int]] = {}
    inner = max(1, workers // max(1, len(archives)))
    lock = threading.Lock()
    cancel = threading.Event()
    errors: list[BaseException] = []

    def work() -> None:
        while not cancel.is_set():
            with lock:
                if not pending:
                    return
                number, (path, source) = pending.popleft()
            try:
                outcome = _unpack_nested(
                    path, source, base / str(number), budget, limits, inner, on_file, cancel
                )
                if isinstance(source, Path):
                    source.unlink(missing_ok=True)
            except BaseException as exc:  # handed to the calling thread below
                with lock:
                    errors.append(exc)
                cancel.set()
                return
            with lock:
                outcomes[number] = outcome

    _run_threads(work, min(max(workers, 1), len(archives)), cancel, errors)
    return [outcomes[number] for number in range(len(archives))]


def _is_stored_zip(task: Task) -> bool:
    """An entry named ``.zip`` (any case) stored as is, unencrypted: readable in place."""
    info = task.info
    return (
        info.filename.lower().endswith(".zip")
        and info.compress_type == zipfile.ZIP_STORED
        and not info.flag_bits & FLAG_ENCRYPTED
        and info.compress_size == info.file_size
    )


def _stored_span(
    archive: zipfile.ZipFile, span: Span, info: zipfile.ZipInfo, budget: Budget
) -> Span | Skipped:
    """Where a stored entry's bytes lie in the archive, once its CRC is checked.

    ``ZipFile.open`` checks the local header as for extraction; the bytes are read once for the
    CRC (and counted as inflated, as if written out) instead of being copied to a file.
    """
    try:
        archive.open(info).close()
    except zipfile.BadZipFile as exc:
        return Skipped(info.filename, f"corrupted entry: {exc}")
    except UnicodeDecodeError:
        return Skipped(info.filename, "corrupted entry: local header name is not UTF-8")
    with span.open() as file:
        file.seek(info.header_offset)
        _, name_length, extra_length = LOCAL_HEADER.unpack(file.read(LOCAL_HEADER.size))
        start = info.header_offset + LOCAL_HEADER.size + name_length + extra_length
        file.seek(start)
        crc, left = 0, info.file_size
        while left and (chunk := file.read(min(CHUNK_SIZE, left))):
            budget.add_bytes(len(chunk))
            crc = isal_zlib.crc32(chunk, crc)
            left -= len(chunk)
    if left or crc != info.CRC:
        return Skipped(info.filename, "CRC error")
    return Span(span.path, span.start + start, info.file_size)


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
    span = Span.whole(zip_path)
    budget = Budget(limits)
    created: list[Path] = []
    try:
        with open_zip(span) as archive:
            plan = budget.admit(archive)
            if not plan.tasks and not plan.skipped:
                raise EmptyZip(detail=f"{span.path.name} holds only folders or OS litter")
            _check_disk(dest_dir, plan.declared_bytes, limits)
            loose_root = dest_dir / "archive"
            loose_root.mkdir()
            created.append(loose_root)
            in_place: list[Task] = []
            tasks = plan.tasks  # consumed by _extract_entries
            if nested:
                in_place, tasks = _partition(plan.tasks, _is_stored_zip)
                plan.tasks.clear()
            files, failures = _extract_entries(archive, tasks, loose_root, budget, workers, on_file)
            spans = [(t.path, _stored_span(archive, span, t.info, budget)) for t in in_place]
        skipped, litter = list(plan.skipped), plan.litter
        units: list[Unit] = []
        if nested:
            copied, files = _partition(files, is_zip_file)
            broken, failures = _partition(failures, lambda f: f.path.lower().endswith(".zip"))
            broken += [source for _, source in spans if isinstance(source, Skipped)]
            archives = [(file.path, file.disk_path) for file in copied]
            archives += [(path, source) for path, source in spans if isinstance(source, Span)]
            nested_base = dest_dir / "nested"
            units += [Unit(f.path, nested_base, [], failure=f.reason) for f in broken]
            if archives:
                nested_base.mkdir()
                created.append(nested_base)
            archives.sort(key=lambda item: item[0])
            for unit, unit_skipped, unit_litter in _unpack_all_nested(
                archives, nested_base, budget, limits, workers, on_file
            ):
                units.append(unit)
                skipped += unit_skipped
                litter += unit_litter
        if files or failures:
            units.append(Unit("", loose_root, files, entry_failures=failures))
    except BaseException as exc:
        for root in created:
            shutil.rmtree(root, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:
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
    budget = Budget(limits)
    with open_zip(zip_path) as archive:
        plan = budget.admit(archive)
        infos = [task.info for task in plan.tasks]
        readable = [info for info in infos if inflates_cleanly(archive, info, budget)]
        return any(_offer(archive, info, accept) for info in readable)


def check_zip(zip_path: Path | str, limits: UnpackLimits) -> None:
    """The format checks of a bulk archive, from its central directory alone (nothing inflated).

    Raises NotAZip, CorruptedZip or EmptyZip. A declared size or entry count over the limits is
    left to the extraction, which refuses it as the run's own failure.
    """
    with open_zip(zip_path) as archive:
        try:
            plan = Budget(limits).admit(archive)
        except UnpackLimitExceeded:
            return
        if not plan.tasks and not plan.skipped:
            raise EmptyZip(detail=f"{Path(zip_path).name} holds only folders or OS litter")


def inflates_cleanly(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    budget: Budget,
    turns: AbstractContextManager[object] | None = None,
) -> bool:
    """Inflate an entry within the limits and discard it; False if the entry is faulty."""
    try:
        for _ in inflate(archive, info, budget, turns):
            pass
    except EntryFault:
        return False
    return True


def _offer(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, accept: Callable[[BinaryIO], bool]
) -> bool:
    """Ask ``accept`` about a fresh stream of the entry."""
    with archive.open(info) as stream:
        return accept(stream)
