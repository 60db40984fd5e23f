"""Reading DICOM headers safely: sniffing by content, attributes up to the pixel data, checks.

Pixel data is never decoded here (see `medscan.analyzer.volume`); its length is only checked
against what the header declares, so that incomplete instances can be left out of their series.
"""

from __future__ import annotations

import math
import os
import struct
import sys
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from time import perf_counter
from typing import BinaryIO, TypeVar

from pydicom import dcmread
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_partial
from pydicom.tag import BaseTag
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from medscan.analyzer.explicit_vr import (
    PIXEL_TAGS,
    UNDEFINED_LENGTH,
    ScannedHeader,
    Truncated,
    Unusual,
    scan_header,
)
from medscan.config import MIB

__all__ = [
    "DicomReadError",
    "FileProblem",
    "Frame",
    "Instance",
    "is_dicom",
    "read_instance",
    "read_instances",
    "read_stream_instance",
    "split_results",
    "try_read_instance",
]

#: A header (everything before the pixel data) larger than this is not read.
MAX_HEADER_BYTES = 64 * MIB
_CHUNK = 16 * 2**10
#: `scan_header` is given the first chunk of a file, then (rarely) up to this much.
_SCAN_LIMIT = MIB
_ITEM = (0xFFFE, 0xE000)
_NATIVE_SYNTAXES = frozenset({ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian})
#: More frames than this in one instance is not believed (the header would cost gigabytes).
MAX_FRAMES = 100_000
#: The pixel problem of an instance that is not an image (no pixel data element at all).
NO_PIXEL_DATA = "no pixel data"

_T = TypeVar("_T")
Position = tuple[float, float, float]
Orientation = tuple[float, float, float, float, float, float]


class DicomReadError(ValueError):
    """A file that cannot be read as DICOM; names the file and the cause."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(f"{os.fspath(path)}: {reason}")
        self.path = os.fspath(path)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Frame:
    """One image of an instance: its index in the pixel data, geometry and rescale.

    For a multi-frame instance these come from the Per-frame, else the Shared Functional
    Groups (Plane Position, Plane Orientation, Pixel Measures, Pixel Value Transformation),
    else the top-level attributes; `position` of a multi-frame instance is None unless its
    functional groups give one per frame.
    """

    index: int
    position: Position | None
    orientation: Orientation | None
    pixel_spacing: tuple[float, float] | None
    slope: float
    intercept: float


@dataclass(frozen=True, slots=True)
class Instance:
    """The header of one DICOM file; `pixel_problem` is None when its pixel data is complete.

    `file_path` is where the file is read from (`path` gives it as a Path); `name` is how the
    user knows it (the entry name inside a ZIP, '/'-separated), used for grouping by folder,
    path order and left-out lists. `file_path` is the caller's string, shared, not copied.
    """

    file_path: str
    name: str
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    series_number: int | None
    instance_number: int | None
    image_type: tuple[str, ...]
    modality: str
    transfer_syntax_uid: str
    rows: int | None
    columns: int | None
    samples_per_pixel: int
    bits_allocated: int | None
    number_of_frames: int
    frames: tuple[Frame, ...]
    pixel_problem: str | None
    read_seconds: float

    @property
    def path(self) -> Path:
        """Where the file is read from."""
        return Path(self.file_path)

    @property
    def image_position(self) -> Position | None:
        """The first frame's position."""
        return self.frames[0].position if self.frames else None

    @property
    def image_orientation(self) -> Orientation | None:
        """The first frame's orientation."""
        return self.frames[0].orientation if self.frames else None

    @property
    def is_localizer(self) -> bool:
        """Whether ImageType holds LOCALIZER (a scout image, never the analysed series)."""
        return "LOCALIZER" in self.image_type

    @property
    def is_image(self) -> bool:
        """Whether the instance carries a pixel data element (complete or not)."""
        return self.pixel_problem != NO_PIXEL_DATA


@dataclass(frozen=True, slots=True)
class FileProblem:
    """A file that could not be read, and why; `name` as in `Instance`."""

    path: Path
    reason: str
    name: str = ""


@dataclass(frozen=True)
class _PixelElement:
    """Where the (Float/Double Float) Pixel Data element's value starts, and its length."""

    length: int
    offset: int


@dataclass(frozen=True)
class _Header:
    """A dataset read up to its pixel data."""

    dataset: Dataset
    transfer_syntax_uid: UID
    pixel: _PixelElement | None


class _PrefixReader:
    """A seekable view of a binary stream that only ever reads it forwards.

    What was read is kept in memory, so seeking back is free even on streams where it is
    slow (``zipfile.ZipFile.open()``). Reading past `limit` bytes raises `_HeaderTooLarge`.
    """

    def __init__(self, stream: BinaryIO, limit: int = MAX_HEADER_BYTES) -> None:
        self._stream = stream
        self._limit = limit
        self._buffer = bytearray()
        self._position = 0
        self._at_eof = False
        self.name = getattr(stream, "name", "<stream>")

    def read(self, size: int | None = -1) -> bytes:
        """Read up to `size` bytes (all when negative) from the current position."""
        end = self._limit + 1 if size is None or size < 0 else self._position + size
        self._fill(end)
        data = bytes(self._buffer[self._position : end])
        self._position += len(data)
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move to `offset`; SEEK_END reads the whole stream (up to the limit)."""
        if whence == os.SEEK_END:
            self._fill(self._limit + 1)
            base = len(self._buffer)
        else:
            base = self._position if whence == os.SEEK_CUR else 0
        if base + offset < 0:
            raise OSError(f"negative seek position {base + offset}")
        self._position = base + offset
        return self._position

    def tell(self) -> int:
        """Return the current position."""
        return self._position

    def _fill(self, end: int) -> None:
        while len(self._buffer) < end and not self._at_eof:
            if len(self._buffer) >= self._limit:
                raise _HeaderTooLarge(f"header larger than {self._limit} bytes")
            want = min(max(end - len(self._buffer), _CHUNK), self._limit - len(self._buffer))
            chunk = self._stream.read(want)
            self._at_eof = not chunk
            self._buffer += chunk


class _HeaderTooLarge(Exception):
    """Raised by `_PrefixReader` past its limit."""


def _read_header(
    stream: BinaryIO, name: str | os.PathLike[str], *, seekable: bool = False
) -> _Header:
    """Read a dataset up to its pixel data, checking it is DICOM (see `is_dicom`).

    ``force`` is only passed to pydicom once the group 0008 bytes were seen. A `seekable`
    stream (a file no larger than `MAX_HEADER_BYTES`, which bounds its header) is read as it
    is; any other goes through a `_PrefixReader`.

    Raises
    ------
    DicomReadError
        Not DICOM, or the header is cut short or corrupt.
    """
    reader = stream if seekable else _PrefixReader(stream)
    pixel: list[_PixelElement] = []

    def at_pixel_data(tag: BaseTag, vr: str | None, length: int) -> bool:
        if tag in PIXEL_TAGS:
            pixel.append(_PixelElement(length, reader.tell()))
            return True
        return False

    try:
        prefix = reader.read(132)
        part10 = prefix[128:132] == b"DICM"
        if not part10 and prefix[:2] not in (b"\x08\x00", b"\x00\x08"):
            raise DicomReadError(
                name, "not DICOM: no 'DICM' at offset 128 and no group 0008 element at offset 0"
            )
        reader.seek(0)
        dataset = read_partial(reader, at_pixel_data, force=not part10)
        syntax = _transfer_syntax(dataset)
        if syntax != DeflatedExplicitVRLittleEndian:  # positions refer to the inflated data
            _check_complete(dataset, reader.tell(), name)
        meta = dataset.file_meta
        for keyword, meta_keyword in _META_KEYWORDS.items():
            if not (dataset.get(keyword) or meta.get(meta_keyword)):
                raise DicomReadError(name, f"not DICOM: no {keyword}")
    except DicomReadError:
        raise
    except _HeaderTooLarge as exc:
        raise DicomReadError(name, str(exc)) from exc
    except Exception as exc:  # the parser meets arbitrary bytes: any failure means "not DICOM"
        raise DicomReadError(name, f"unreadable DICOM header: {type(exc).__name__}: {exc}") from exc
    return _Header(dataset, syntax, pixel[0] if pixel else None)


def _transfer_syntax(dataset: Dataset) -> UID:
    """Return the file's transfer syntax, or the one pydicom guessed for a raw dataset."""
    declared = dataset.file_meta.get("TransferSyntaxUID")
    if declared:
        return UID(declared)
    implicit, little = dataset.original_encoding
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _check_complete(dataset: Dataset, stop: int, name: str | os.PathLike[str]) -> None:
    """Raise DicomReadError unless the last element read ends exactly at `stop`.

    pydicom reads a value cut short by the end of the file without complaint, and stops
    quietly on a partial element header, so this compares where the last element ends with
    where reading stopped (the start of the pixel data element, or the end of the file).
    """
    extents = [_extent(element) for element in dataset.elements()]
    if not extents:
        raise DicomReadError(name, "not DICOM: empty dataset")
    tag, start, length = max(extents, key=lambda extent: extent[1])
    if length != UNDEFINED_LENGTH and start + length != stop:
        raise DicomReadError(
            name, f"DICOM header cut short or corrupt: element {tag} at offset {start}"
        )


def _extent(element: RawDataElement | DataElement) -> tuple[BaseTag, int, int]:
    """Return an element's tag, value offset and length (undefined for parsed sequences)."""
    if isinstance(element, RawDataElement):
        return element.tag, element.value_tell, element.length
    return element.tag, element.file_tell or 0, UNDEFINED_LENGTH


def is_dicom(source: str | os.PathLike[str] | BinaryIO) -> bool:
    """Return True if `source` is DICOM by content and its header parses up to the pixel data.

    DICOM means a Part 10 file (``DICM`` at offset 128) or a raw dataset whose first element is
    in group 0008, holding SOPClassUID and SOPInstanceUID; every element before the pixel data
    must be whole. A binary stream is read forwards from its current position, only as far as
    the start of the pixel data (never the pixel data itself) and at most `MAX_HEADER_BYTES`;
    it is left positioned somewhere after that and not closed.
    """
    try:
        if isinstance(source, str | os.PathLike):
            with _open(source) as stream:
                _read_header(stream, source)
        else:
            _read_header(source, getattr(source, "name", "<stream>"))
    except DicomReadError:
        return False
    return True


def _open(path: str | os.PathLike[str]) -> BinaryIO:
    """Open `path` for binary reading, as DicomReadError when it cannot be."""
    try:
        return open(path, "rb")
    except OSError as exc:
        raise DicomReadError(path, f"cannot open: {exc.strerror or exc}") from exc


def read_instance(path: str | os.PathLike[str], name: str | None = None) -> Instance:
    """Read the header of one DICOM file, never its pixel data.

    The pixel data is checked from the element's declared length and the bytes left in the
    file: for native syntaxes (Deflated included, inflated for the check) it must hold Rows ×
    Columns × SamplesPerPixel × BitsAllocated/8 × NumberOfFrames bytes; for encapsulated ones
    the first fragment must be whole. `name` (default: `path`) names the file in the Instance.

    Raises
    ------
    DicomReadError
        The file is not DICOM, cannot be opened, or its header is cut short or corrupt.
    """
    started = perf_counter()
    path = os.fspath(path)  # a Path's own string: shared, not copied
    with _open(path) as stream:
        size = os.fstat(stream.fileno()).st_size
        name = name or path
        try:
            scanned = _scan(stream, size)
            instance = _scanned_instance(path, name, scanned)
        # Read by pydicom: the same Instance, or the reason it cannot be read (a read error
        # included, as pydicom's path words it).
        except (Unusual, OSError):
            stream.seek(0)
            return _read(stream, path, name, size, started)
        pixel = _PixelElement(*scanned.pixel) if scanned.pixel else None
        return _checked(instance, pixel, stream, size, started)


def read_stream_instance(
    stream: BinaryIO, path: str | os.PathLike[str] | None = None, size: int | None = None
) -> Instance:
    """Read the header of a DICOM stream (e.g. a ZIP entry), never its pixel data.

    The stream is read forwards as in `is_dicom` and not closed; `path` (default: the stream's
    ``name``) names it in the Instance and in errors. The bytes after the header are not read,
    so without `size` pixel data is only checked against its declared length: a stream cut
    inside its pixel data passes here, where `read_instance` on the unpacked file would flag
    it. Given the stream's `size` in bytes (a ZIP entry's, once it inflated cleanly), the
    check is `read_instance`'s; the stream must then be seekable.

    Raises
    ------
    DicomReadError
        The stream is not DICOM, or its header is cut short or corrupt.
    """
    path = Path(path or getattr(stream, "name", "<stream>"))
    return _read(stream, os.fspath(path), path.as_posix(), size, perf_counter())


def _scan(stream: BinaryIO, size: int) -> ScannedHeader:
    """`scan_header` on the first bytes of a file, more of them if the header is long."""
    data = stream.read(_CHUNK)
    try:
        return scan_header(data, size, _SCANNED_TAGS)
    except Truncated:
        data += stream.read(_SCAN_LIMIT - len(data))
    try:
        return scan_header(data, size, _SCANNED_TAGS)
    except Truncated:
        raise Unusual(f"header longer than {_SCAN_LIMIT} bytes") from None


def _read(
    stream: BinaryIO, path: str, name: str, size: int | None, started: float
) -> Instance:
    """Read a header with pydicom and check its pixel data against `size` bytes (None: unknown)."""
    header = _read_header(stream, name, seekable=size is not None and size <= MAX_HEADER_BYTES)
    try:
        instance = _dataset_instance(path, name, header)
    except (ValueError, TypeError, AttributeError) as exc:  # values pydicom cannot convert
        raise DicomReadError(name, f"invalid header value: {exc}") from exc
    return _checked(instance, header.pixel, stream, size, started)


def _checked(
    instance: Instance,
    pixel: _PixelElement | None,
    stream: BinaryIO,
    size: int | None,
    started: float,
) -> Instance:
    """`instance` with its pixel problem (`_pixel_problem`) and the seconds since `started`."""
    if not instance.frames:
        problem = f"NumberOfFrames {instance.number_of_frames} not in 1..{MAX_FRAMES}"
    else:
        try:
            problem = _pixel_problem(instance, pixel, stream, size)
        except OSError as exc:
            raise DicomReadError(instance.name, f"cannot read: {exc.strerror or exc}") from exc
    return replace(instance, pixel_problem=problem, read_seconds=perf_counter() - started)


def _dataset_instance(path: str, name: str, header: _Header) -> Instance:
    """The Instance of a header pydicom read (pixels not checked yet)."""
    ds = header.dataset
    meta = ds.file_meta

    def get(keyword: str) -> object:
        value = _get(ds, keyword)
        if not value and keyword in _META_KEYWORDS:
            return meta.get(_META_KEYWORDS[keyword])
        return value

    number_of_frames = _int_or_none(get("NumberOfFrames")) or 1
    frames = _frames(ds, number_of_frames) if 1 <= number_of_frames <= MAX_FRAMES else ()
    return _instance(path, name, get, header.transfer_syntax_uid, number_of_frames, frames)


def _scanned_instance(path: str, name: str, header: ScannedHeader) -> Instance:
    """The Instance of a header `scan_header` walked: plain values only, else `Unusual`.

    A value `_plain_value` leaves to pydicom, an empty one, missing SOP UIDs, several frames
    or functional groups all raise `Unusual`, so what is returned is what `_dataset_instance`
    gives for the same file.
    """
    values = {}
    for tag, (vr, raw) in header.elements.items():
        if tag in _FUNCTIONAL_GROUPS:
            raise Unusual("functional groups")
        value = _plain_value(vr, raw, little_endian=True) if raw else _ASK_PYDICOM
        if value is _ASK_PYDICOM:
            raise Unusual(f"element {tag:08X}")
        values[_KEYWORDS[tag]] = value
    if not (values.get("SOPClassUID") and values.get("SOPInstanceUID")):
        raise Unusual("SOP UIDs only in the file meta, if at all")
    if (_int_or_none(values.get("NumberOfFrames")) or 1) != 1:
        raise Unusual("several frames")
    frame = _frame(0, *(values.get(keyword) for keyword in _FRAME_KEYWORDS))
    return _instance(path, name, values.get, header.transfer_syntax_uid, 1, (frame,))


def _instance(
    path: str,
    name: str,
    get: Callable[[str], object],
    transfer_syntax_uid: str,
    number_of_frames: int,
    frames: tuple[Frame, ...],
) -> Instance:
    """Collect the attributes `get` gives by keyword into an Instance (pixels not checked yet).

    Values that many instances share (UIDs of the study and series, image type, orientation...)
    are kept once, so that 100,000 headers in memory cost what their own values need.
    """
    image_type = tuple(str(value).strip().upper() for value in _values(get("ImageType")))
    return Instance(
        file_path=path,
        name=name,
        study_uid=sys.intern(str(get("StudyInstanceUID") or "")),
        series_uid=sys.intern(str(get("SeriesInstanceUID") or "")),
        sop_instance_uid=str(get("SOPInstanceUID")),
        sop_class_uid=sys.intern(str(get("SOPClassUID"))),
        series_number=_int_or_none(get("SeriesNumber")),
        instance_number=_int_or_none(get("InstanceNumber")),
        image_type=_shared(image_type),
        modality=sys.intern(str(get("Modality") or "")),
        transfer_syntax_uid=sys.intern(str(transfer_syntax_uid)),
        rows=_int_or_none(get("Rows")),
        columns=_int_or_none(get("Columns")),
        samples_per_pixel=_int_or_none(get("SamplesPerPixel")) or 1,
        bits_allocated=_int_or_none(get("BitsAllocated")),
        number_of_frames=number_of_frames,
        frames=frames,
        pixel_problem=None,
        read_seconds=0.0,
    )


def _frames(ds: Dataset, count: int) -> tuple[Frame, ...]:
    """The geometry and rescale of each frame, functional groups first (see `Frame`)."""
    if count == 1 and _FUNCTIONAL_GROUPS.isdisjoint(ds.keys()):
        return (_frame(0, *(_get(ds, keyword) for keyword in _FRAME_KEYWORDS)),)
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    per_frame = list(ds.get("PerFrameFunctionalGroupsSequence") or ())
    frames = []
    for index in range(count):
        groups = [per_frame[index] if index < len(per_frame) else None, shared]

        def attribute(macro: str, keyword: str, groups: list[Dataset | None] = groups) -> object:
            for group in groups:
                item = _first_item(group, macro) if group is not None else None
                if item is not None and keyword in item:
                    return item.get(keyword)
            return None if count > 1 and keyword == "ImagePositionPatient" else ds.get(keyword)

        frames.append(
            _frame(
                index,
                attribute("PlanePositionSequence", "ImagePositionPatient"),
                attribute("PlaneOrientationSequence", "ImageOrientationPatient"),
                attribute("PixelMeasuresSequence", "PixelSpacing"),
                attribute("PixelValueTransformationSequence", "RescaleSlope"),
                attribute("PixelValueTransformationSequence", "RescaleIntercept"),
            )
        )
    return tuple(frames)


_FUNCTIONAL_GROUPS = frozenset({0x52009229, 0x52009230})  # Shared, Per-frame
_FRAME_KEYWORDS = (
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "RescaleSlope",
    "RescaleIntercept",
)


def _frame(
    index: int,
    position: object,
    orientation: object,
    spacing: object,
    slope: object,
    intercept: object,
) -> Frame:
    """A Frame from the attribute values (as pydicom gives them) that describe it.

    Equal values are kept once (see `_shared`), coordinates of positions included: the slices
    of a series mostly share two of their three.
    """
    slope_value = _float_or_none(slope)
    coordinates = _floats(position, 3)
    return Frame(
        index=index,
        position=_shared(tuple(map(_shared, coordinates))) if coordinates else None,
        orientation=_shared(_floats(orientation, 6)),  # type: ignore[arg-type]
        pixel_spacing=_shared(_floats(spacing, 2)),  # type: ignore[arg-type]
        slope=_shared(1.0 if slope_value is None else slope_value),
        intercept=_shared(_float_or_none(intercept) or 0.0),
    )


@lru_cache(maxsize=1024, typed=True)
def _shared(value: _T) -> _T:
    """The first value seen equal to `value` (bounded): equal floats and tuples are kept once."""
    return value


#: Returned by `_plain_value` for a value it leaves to pydicom.
_ASK_PYDICOM = object()
_TAGS = {
    keyword: tag_for_keyword(keyword)
    for keyword in (
        *_FRAME_KEYWORDS,
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "SOPClassUID",
        "SeriesNumber",
        "InstanceNumber",
        "NumberOfFrames",
        "ImageType",
        "Modality",
        "Rows",
        "Columns",
        "SamplesPerPixel",
        "BitsAllocated",
    )
}
_KEYWORDS = {tag: keyword for keyword, tag in _TAGS.items()}
#: Where `_dataset_instance` looks when the dataset lacks a SOP UID.
_META_KEYWORDS = {
    "SOPClassUID": "MediaStorageSOPClassUID",
    "SOPInstanceUID": "MediaStorageSOPInstanceUID",
}
#: The top-level elements `scan_header` keeps for `_scanned_instance`.
_SCANNED_TAGS = frozenset({*_KEYWORDS, *_FUNCTIONAL_GROUPS})


def _get(ds: Dataset, keyword: str) -> object:
    """``ds.get(keyword)`` for the attributes of `_TAGS`, plain values decoded from their bytes.

    pydicom converts a value through its generic machinery (tens of µs each, most of a header's
    cost); the plain UI, IS, DS, CS and US values headers are made of are decoded here instead.
    Anything unusual (another VR, implicit VR, odd text, several values where one is expected)
    goes to pydicom, so the result is pydicom's either way.
    """
    element = ds.get_item(_TAGS[keyword])
    if isinstance(element, RawDataElement) and element.value:
        value = _plain_value(element.VR, element.value, element.is_little_endian)
        if value is not _ASK_PYDICOM:
            return value
    return ds.get(keyword)


def _plain_value(vr: str | None, raw: bytes, little_endian: bool) -> object:
    """The value of a raw element as pydicom converts it, or `_ASK_PYDICOM`."""
    if vr == "US":
        if len(raw) != 2:
            return _ASK_PYDICOM
        return int.from_bytes(raw, "little" if little_endian else "big")
    if vr not in ("UI", "IS", "DS", "CS"):
        return _ASK_PYDICOM
    try:
        text = raw.decode("ascii").rstrip(" \0")
    except UnicodeDecodeError:
        return _ASK_PYDICOM
    parts = text.split("\\")
    if not text or any(not part or part != part.strip() for part in parts):
        return _ASK_PYDICOM
    if vr in ("UI", "CS"):
        if vr == "UI" and len(parts) > 1:
            return _ASK_PYDICOM
        return parts[0] if len(parts) == 1 else parts
    try:
        values = [int(part) if vr == "IS" else float(part) for part in parts]
    except ValueError:
        return _ASK_PYDICOM
    return values[0] if len(values) == 1 else values


def _first_item(ds: Dataset, keyword: str) -> Dataset | None:
    """The first item of a sequence attribute, None when absent or empty."""
    items = ds.get(keyword)
    return items[0] if items else None


def _values(value: object) -> list[object]:
    """A possibly multi-valued attribute value as a list ([] when absent or empty)."""
    if value is None or value == "":
        return []
    return [value] if isinstance(value, str) else list(value)


def _int_or_none(value: object) -> int | None:
    """Return an integer attribute value, None when absent, empty or not a number."""
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _float_or_none(value: object) -> float | None:
    """Return a decimal value as a float, None when absent, empty or not a number."""
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _floats(value: object, count: int) -> tuple[float, ...] | None:
    """Return a multi-valued decimal with exactly `count` finite values, else None."""
    try:
        values = tuple(float(item) for item in value or ())  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return None
    if len(values) != count or not all(math.isfinite(item) for item in values):
        return None
    return values


def _pixel_problem(
    instance: Instance, pixel: _PixelElement | None, stream: BinaryIO, size: int | None
) -> str | None:
    """Return why the pixel data is missing or incomplete, None when it is complete.

    With `size` None the bytes present are not checked, only the declared length.
    """
    if pixel is None:
        return NO_PIXEL_DATA
    syntax = instance.transfer_syntax_uid
    deflated = syntax == DeflatedExplicitVRLittleEndian
    encapsulated = syntax not in _NATIVE_SYNTAXES and not deflated
    if pixel.length == UNDEFINED_LENGTH:
        if not encapsulated:
            return "native pixel data with undefined length"
        return None if size is None else _fragment_problem(stream, pixel.offset, size)
    if encapsulated:
        needed = pixel.length
    elif instance.rows and instance.columns and instance.bits_allocated:
        bits = instance.rows * instance.columns * instance.bits_allocated
        needed = (bits * instance.samples_per_pixel * instance.number_of_frames + 7) // 8
    else:
        return "pixel data without Rows, Columns or BitsAllocated"
    if size is None:
        present = pixel.length
    elif deflated:  # offsets refer to the inflated dataset: inflate it to count
        present = _inflated_pixel_length(stream)
    else:
        present = min(pixel.length, size - pixel.offset)
    if present < needed:
        return f"pixel data truncated: {present} of {needed} bytes"
    return None


def _inflated_pixel_length(stream: BinaryIO) -> int:
    """The number of pixel data bytes a Deflated file holds once inflated (0 if it is cut)."""
    stream.seek(0)
    try:
        return len(dcmread(stream, force=True).get("PixelData") or b"")
    except Exception:  # zlib and the parser fail in many ways on a cut deflate stream
        return 0


def _fragment_problem(stream: BinaryIO, offset: int, size: int) -> str | None:
    """Check the Basic Offset Table item and the first fragment of encapsulated pixel data."""
    position = offset
    for what in ("basic offset table", "first fragment"):
        stream.seek(position)
        item = stream.read(8)
        if len(item) < 8:
            return f"pixel data truncated: no {what}"
        group, element, length = struct.unpack("<HHL", item)
        if (group, element) != _ITEM:
            return f"encapsulated pixel data malformed: no {what} item at offset {position}"
        position += 8 + length
        if position > size:
            return f"pixel data truncated: {what} of {length} bytes has {size - position + length}"
    return None


def try_read_instance(
    path: str | os.PathLike[str], name: str | None = None
) -> Instance | FileProblem:
    """`read_instance`, with an unreadable file returned as its FileProblem instead of raised."""
    try:
        return read_instance(path, name)
    except DicomReadError as exc:
        return FileProblem(Path(path), exc.reason, name or os.fspath(path))


def split_results(
    results: Iterable[Instance | FileProblem],
) -> tuple[list[Instance], list[FileProblem]]:
    """Separate read results into instances and problems, keeping their order."""
    instances: list[Instance] = []
    problems: list[FileProblem] = []
    for result in results:
        (instances if isinstance(result, Instance) else problems).append(result)  # type: ignore[arg-type]
    return instances, problems


def read_instances(
    paths: Iterable[str | os.PathLike[str]],
    workers: int = 2,
    names: Mapping[Path, str] | None = None,
) -> tuple[list[Instance], list[FileProblem]]:
    """Read many headers with a thread pool; both lists are sorted by name.

    `names` maps a path to the name its Instance gets (default: the path itself).
    """
    names = names or {}
    named = {Path(path): names.get(Path(path)) or os.fspath(path) for path in paths}
    ordered = sorted(named, key=lambda path: (named[path], path))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return split_results(pool.map(lambda path: try_read_instance(path, named[path]), ordered))
