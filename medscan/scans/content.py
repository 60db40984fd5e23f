"""What an uploaded scan is, decided by its content (never by its name or Content-Type)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from medscan.analyzer import DicomReadError, read_instance, read_stream_instance
from medscan.models import ContentKind
from medscan.safezip import CorruptedZip, NotAZip, UnpackLimits, inspect_zip

DICOM, ZIP = ContentKind.DICOM, ContentKind.ZIP
ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")


class UnsupportedContent(ValueError):
    """Neither DICOM nor a ZIP holding DICOM."""


@dataclass(frozen=True)
class ScanContent:
    """The kind of a scan file and the UIDs of the (first) DICOM instance in it."""

    kind: ContentKind
    study_uid: str | None
    series_uid: str | None


def classify(path: Path, limits: UnpackLimits) -> ScanContent:
    """Sniff ``path``: a DICOM file whose header parses, or a ZIP with at least one such file.

    A ZIP is held to the unpack limits first (``UnpackLimitExceeded``, a 413, even when it holds
    no DICOM); then entries are offered to the DICOM sniffer until one passes. Raises
    ``UnsupportedContent`` for anything else, including a ZIP whose central directory is broken.
    """
    with path.open("rb") as stream:
        is_zip = stream.read(4) in ZIP_SIGNATURES
    if is_zip:
        return _classify_zip(path, limits)
    try:
        instance = read_instance(path)
    except DicomReadError as exc:
        raise UnsupportedContent(str(exc)) from exc
    return ScanContent(DICOM, instance.study_uid or None, instance.series_uid or None)


def _classify_zip(path: Path, limits: UnpackLimits) -> ScanContent:
    found: list[ScanContent] = []

    def accept(stream: BinaryIO) -> bool:
        try:
            instance = read_stream_instance(stream)
        except DicomReadError:
            return False
        found.append(ScanContent(ZIP, instance.study_uid or None, instance.series_uid or None))
        return True

    try:
        if inspect_zip(path, limits, accept):
            return found[0]
    except (NotAZip, CorruptedZip) as exc:
        raise UnsupportedContent(exc.message) from exc
    raise UnsupportedContent("ZIP holds no DICOM file")
