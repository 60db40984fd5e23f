"""The series listing and previews of a stored scan, read exactly as its analysis reads it.

A single-file scan is one instance; a ZIP scan is read in place (`open_zip_scan`): every entry
is inflated once within the unpack limits, as extraction would, but only headers are parsed
and only the entry of the image shown is decoded. Nothing is written to disk. The listing of
a scan is kept in memory (a few scans per worker, keyed by the stored file's SHA-256), so
paging through the images of a ZIP scan reads its headers once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

from medscan.analyzer import (
    DicomReadError,
    FileProblem,
    Instance,
    PixelDecodeError,
    Series,
    choose_series,
    choose_study,
    group_studies,
    no_dicom_reason,
    no_series_reason,
    read_stream_instance,
    split_results,
    try_read_instance,
)
from medscan.analyzer.preview import (
    SeriesEntry,
    Window,
    png_image,
    series_description,
    series_entries,
    windowed,
)
from medscan.analyzer.volume import hounsfield_image
from medscan.safezip import ArchiveError, UnpackLimits, ZipScan, open_zip_scan
from medscan.scans.content import ZIP

#: Scans whose listing a worker keeps in memory.
CACHED_SCANS = 16
#: Changes whenever the same scan would give another listing or image (part of the ETag).
RENDERING = "1"

Opener = Callable[[Instance], AbstractContextManager[BinaryIO]]


class NoImage(Exception):
    """Nothing to preview: the scan has no decodable image series; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ScanSeries:
    """A scan's series listing and the analysed series, or why there is none (`problem`)."""

    entries: list[SeriesEntry]
    chosen: Series | None
    problem: str | None


@dataclass(frozen=True)
class StoredScan:
    """Where a scan's file is and what it is; `sha256` keys the in-memory listing."""

    path: Path
    kind: str
    file_name: str
    sha256: str
    limits: UnpackLimits


@lru_cache(maxsize=CACHED_SCANS)
def scan_series(scan: StoredScan) -> ScanSeries:
    """The series of the scan's analysed study (see `choose_study`), read once per worker."""
    if scan.kind != ZIP:
        return _listing(*_read_file(scan), _file_opener(scan.path))
    try:
        with open_zip_scan(scan.path, scan.limits) as archive:
            return _listing(*_read_entries(archive), _entry_opener(archive))
    except ArchiveError as exc:
        return ScanSeries([], None, exc.message)


def _read_file(scan: StoredScan) -> tuple[list[Instance], list[FileProblem]]:
    """The one instance of a single-file scan, named by the scan's file name."""
    result = try_read_instance(scan.path, scan.file_name)
    return ([result], []) if isinstance(result, Instance) else ([], [result])


def _read_entries(archive: ZipScan) -> tuple[list[Instance], list[FileProblem]]:
    """The instances of a ZIP scan's entries that read cleanly, named by their entry names."""

    def read(name: str, stream: BinaryIO, size: int) -> Instance | FileProblem:
        try:
            return replace(read_stream_instance(stream, name, size), name=name)
        except DicomReadError as exc:
            return FileProblem(Path(name), exc.reason, name)

    return split_results(result for _, result in archive.read_clean(read))


def _file_opener(path: Path) -> Opener:
    """Open the instance of a single-file scan: the file."""
    return lambda instance: path.open("rb")


def _entry_opener(archive: ZipScan) -> Opener:
    """Open an instance of a ZIP scan: its entry's stream."""
    return lambda instance: archive.open(instance.name)


def _listing(instances: list[Instance], problems: list[FileProblem], opener: Opener) -> ScanSeries:
    """Group as the analysis does, list the analysed study's series, keep the chosen one."""
    studies = group_studies(instances)
    if not studies:
        return ScanSeries([], None, no_dicom_reason(problems))
    study = choose_study(studies)

    def describe(instance: Instance) -> str | None:
        with opener(instance) as stream:
            return series_description(stream)

    entries = series_entries(study, describe)
    chosen = choose_series(study)
    if chosen is None:
        return ScanSeries(entries, None, no_series_reason(study))
    sizes = {(instance.rows, instance.columns) for instance in chosen.instances}
    if len(sizes) > 1:  # hounsfield_volume refuses such a series: so does the preview
        return ScanSeries(entries, None, f"images of {len(sizes)} different sizes in the series")
    return ScanSeries(entries, chosen, None)


@contextmanager
def _image_source(scan: StoredScan, instance: Instance) -> Iterator[BinaryIO]:
    """The bytes of one instance: the scan file, or its one ZIP entry (nothing extracted)."""
    if scan.kind != ZIP:
        with scan.path.open("rb") as stream:
            yield stream
        return
    with open_zip_scan(scan.path, scan.limits) as archive, archive.open(instance.name) as stream:
        yield stream


def preview_png(scan: StoredScan, series: Series, index: int, window: Window) -> bytes:
    """Image `index` (slice order) of `series` windowed into a PNG; only that image is decoded.

    Raises NoImage when it cannot be decoded.
    """
    image = series.slices[index]
    try:
        with _image_source(scan, image.instance) as source:
            hu = hounsfield_image(image, source)
    except PixelDecodeError as exc:
        raise NoImage(exc.reason) from exc
    except ArchiveError as exc:
        raise NoImage(exc.message) from exc
    return png_image(windowed(hu, window))
