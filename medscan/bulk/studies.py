"""A bulk archive's studies: extract it, group its DICOM files into studies, analyse each.

A unit is a nested ZIP or the loose files of the archive; each DICOM study (StudyInstanceUID)
of a unit makes one row. Files that are not DICOM are listed as skipped; files that claim to be
DICOM but cannot be read, and entries that cannot be extracted, are listed as skipped when their
folder holds files of a study that was read, else make one Failure row per folder. Instances
left out of a study (duplicates, incomplete pixel data) are listed as skipped with their reason.
A nested ZIP that fails as a whole or holds no readable DICOM is one Failure row, its inner
files not listed.
No Flask here: the HTTP route and the offline CLI both use this module.
"""

from __future__ import annotations

import posixpath
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from medscan.analyzer import (
    FileProblem,
    Instance,
    Model,
    ReportRow,
    Study,
    analyze_study,
    group_studies,
    try_read_instance,
)
from medscan.safezip import ExtractedFile, Skipped, Unit, UnpackLimits, extract_archive, is_zip_file

__all__ = ["BulkResult", "BulkRow", "process_archive"]

#: Extensions that make a file claim to be DICOM (compared lower case).
DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".ima"})
NOT_DICOM = "not DICOM"
NESTED_TOO_DEEP = "nested ZIP inside a nested ZIP is not opened"
NO_DICOM_IN_NESTED = "no readable DICOM in nested ZIP"
#: Written files waiting for a reader at most; extraction waits while the readers catch up.
READ_BACKLOG = 256


@dataclass(frozen=True)
class BulkRow:
    """One report row and the reason of its Failure (None on Success)."""

    report: ReportRow
    error: str | None


@dataclass(frozen=True)
class BulkResult:
    """Rows sorted by (path_to_study, study_uid, series_uid); skipped files sorted by path."""

    rows: list[BulkRow]
    skipped: list[Skipped]


class _Readers:
    """Reader threads that read the header of each file handed to ``submit``.

    Files wait in a bounded queue, so extraction never runs more than ``READ_BACKLOG`` files
    ahead, and each result is kept in ``results`` (by file) without any per-file future or
    lock: memory grows by one header per file and nothing else. Files are read by their disk
    name, a string made on demand (no Path per file).
    """

    def __init__(self, workers: int) -> None:
        self.results: dict[ExtractedFile, Instance | FileProblem] = {}
        self._queue: queue.Queue[ExtractedFile | None] = queue.Queue(maxsize=READ_BACKLOG)
        self._errors: list[BaseException] = []
        self._threads = [threading.Thread(target=self._work) for _ in range(max(1, workers))]
        for thread in self._threads:
            thread.start()

    def submit(self, file: ExtractedFile) -> None:
        """Queue a written file; waits while the backlog is full."""
        self._queue.put(file)

    def close(self) -> None:
        """Wait for every queued file to be read; re-raise a reader's unexpected error."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()
        if self._errors:
            raise self._errors[0]

    def _work(self) -> None:
        while (file := self._queue.get()) is not None:
            if self._errors:
                continue  # keep draining so that no producer waits forever
            try:
                self.results[file] = try_read_instance(file.disk_name, file.path)
            except BaseException as exc:  # handed to close()
                self._errors.append(exc)


@dataclass
class _UnitStudies:
    """What one unit gives before analysis: its studies by path, Failure rows, skipped files."""

    studies: list[tuple[str, Study]] = field(default_factory=list)
    rows: list[BulkRow] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    failed_whole: bool = False


def process_archive(
    zip_path: Path,
    folder: Path,
    *,
    archive_name: str,
    limits: UnpackLimits,
    model: Model,
    threshold: float,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> BulkResult:
    """Extract `zip_path` into the empty directory `folder` and analyse every study in it.

    Each file's header is read by one of `workers` reader threads as soon as extraction has
    written it, so reading overlaps inflating (pixel data is never read here). Once all are read
    the studies are analysed in path order; ``progress(done, total)`` is called once before the
    first (done = 0) and after each.
    The instances of every study are held until then (about 0.8 KB per DICOM file). The caller
    removes `folder`.

    Raises NotAZip, CorruptedZip, EmptyZip, UnpackLimitExceeded or NotEnoughDiskSpace (see
    `extract_archive`); bad content inside the archive never raises.
    """
    readers = _Readers(workers)
    try:
        extraction = extract_archive(
            zip_path, folder, limits, workers=workers, on_file=readers.submit
        )
    finally:
        readers.close()
    reads = readers.results
    rows: list[BulkRow] = []
    skipped: list[Skipped] = []
    studies: list[tuple[str, Study]] = []
    failed_whole: set[str] = set()
    for unit in extraction.units:
        result = _sort_unit(unit, archive_name, reads)
        studies += result.studies
        rows += result.rows
        skipped += result.skipped
        if result.failed_whole:
            failed_whole.add(unit.path)
    skipped += [item for item in extraction.skipped if not _inside(item.path, failed_whole)]
    studies.sort(key=lambda item: (item[0], item[1].study_uid))
    if progress is not None:  # unpacked: the total is known
        progress(0, len(studies))
    for done, (path_to_study, study) in enumerate(studies, start=1):
        analysis = analyze_study(
            study, path_to_study=path_to_study, model=model, threshold=threshold
        )
        rows.append(BulkRow(analysis.report, analysis.error))
        if progress is not None:
            progress(done, len(studies))
    rows.sort(key=_row_key)
    return BulkResult(rows, sorted(skipped, key=lambda item: item.path))


def _row_key(row: BulkRow) -> tuple[str, str, str]:
    """Sort key of a row: (path_to_study, study_uid, series_uid)."""
    return row.report.path_to_study, row.report.study_uid, row.report.series_uid


def _sort_unit(
    unit: Unit, archive_name: str, reads: dict[ExtractedFile, Instance | FileProblem]
) -> _UnitStudies:
    """Group a unit's headers into studies, and account for every other file."""
    if unit.failure is not None:
        return _UnitStudies(rows=[_failure(unit.path, unit.failure)], failed_whole=True)
    instances: list[Instance] = []
    problems: list[tuple[ExtractedFile, FileProblem]] = []
    for file in unit.files:
        read = reads.pop(file)
        if isinstance(read, Instance):
            instances.append(read)
        else:
            problems.append((file, read))
    troubles = [Skipped(f.path, f"cannot extract: {f.reason}") for f in unit.entry_failures]
    result = _UnitStudies()
    for file, problem in problems:
        if unit.path and is_zip_file(file):
            result.skipped.append(Skipped(_join(unit.path, file.path), NESTED_TOO_DEEP))
        elif _claims_dicom(file):
            troubles.append(Skipped(file.path, f"unreadable DICOM: {problem.reason}"))
        else:
            result.skipped.append(Skipped(_join(unit.path, file.path), NOT_DICOM))
    if unit.path and not instances:
        first = min(troubles, key=lambda trouble: trouble.path, default=None)
        detail = f" ({first.path}: {first.reason})" if first else ""
        return _UnitStudies(
            rows=[_failure(unit.path, NO_DICOM_IN_NESTED + detail)], failed_whole=True
        )

    for study in group_studies(instances):
        paths = [instance.name for instance in study.instances]
        result.studies.append((_study_path(unit.path, paths, archive_name), study))
        result.skipped += [Skipped(_join(unit.path, i.path), i.reason) for i in study.left_out]
    study_folders = {posixpath.dirname(instance.name) for instance in instances}
    by_folder: dict[str, list[Skipped]] = {}
    for trouble in sorted(troubles, key=lambda trouble: trouble.path):
        by_folder.setdefault(posixpath.dirname(trouble.path), []).append(trouble)
    for folder, members in by_folder.items():
        if folder in study_folders:
            result.skipped += [Skipped(_join(unit.path, t.path), t.reason) for t in members]
        else:
            result.rows.append(_folder_failure(unit.path, folder, members, archive_name))
    return result


def _inside(path: str, archives: set[str]) -> bool:
    """Whether `path` lies inside one of the nested ZIPs at `archives`."""
    parts = path.split("/")
    return any("/".join(parts[:n]) in archives for n in range(1, len(parts)))


def _study_path(unit_path: str, paths: list[str], archive_name: str) -> str:
    """A study's path_to_study: the nested ZIP's path, else its one file or deepest folder."""
    if unit_path:
        return unit_path
    if len(paths) == 1:
        return paths[0]
    return posixpath.commonpath([posixpath.dirname(path) for path in paths]) or archive_name


def _folder_failure(
    unit_path: str, folder: str, troubles: list[Skipped], archive_name: str
) -> BulkRow:
    """One Failure row for the unreadable files of a folder that holds no study."""
    first = troubles[0]
    if len(troubles) == 1:
        return _failure(_join(unit_path, first.path), first.reason)
    name = posixpath.basename(first.path)
    reason = f"{len(troubles)} unreadable files, first {name}: {first.reason}"
    return _failure(_join(unit_path, folder) or archive_name, reason)


def _failure(path_to_study: str, reason: str) -> BulkRow:
    """A Failure row without UIDs."""
    return BulkRow(ReportRow.failure(path_to_study), reason)


def _join(unit_path: str, path: str) -> str:
    """A unit's relative path as a path in the archive ("" for the archive root)."""
    return "/".join(part for part in (unit_path, path) if part)


def _claims_dicom(file: ExtractedFile) -> bool:
    """A DICOM extension (any case) or ``DICM`` at offset 128."""
    if posixpath.splitext(file.path)[1].lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(file.disk_name, "rb") as handle:
            return handle.read(132)[128:] == b"DICM"
    except OSError:
        return False
