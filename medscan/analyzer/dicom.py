"""DICOM by content: sniffing, header reading without pixel data, studies, series, HU volumes."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from time import perf_counter
from typing import BinaryIO

import numpy as np
from pydicom import dcmread
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_partial
from pydicom.pixels import get_decoder
from pydicom.tag import BaseTag
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

__all__ = [
    "DicomReadError",
    "FileProblem",
    "Instance",
    "PixelDecodeError",
    "Series",
    "Study",
    "choose_series",
    "group_studies",
    "is_dicom",
    "read_instance",
    "read_instances",
    "read_stream_instance",
]

#: A header (everything before the pixel data) larger than this is not read.
MAX_HEADER_BYTES = 64 * 2**20
_CHUNK = 16 * 2**10
_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})  # (Float/Double Float) Pixel Data
_UNDEFINED_LENGTH = 0xFFFFFFFF
_ITEM = (0xFFFE, 0xE000)
_NATIVE_SYNTAXES = frozenset({ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian})


class DicomReadError(ValueError):
    """A file that cannot be read as DICOM; names the file and the cause."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(f"{os.fspath(path)}: {reason}")
        self.path = os.fspath(path)
        self.reason = reason


class PixelDecodeError(DicomReadError):
    """Pixel data that cannot be turned into an image (missing decoder, odd shape...)."""


@dataclass(frozen=True)
class Instance:
    """The header of one DICOM file; `pixel_problem` is None when its pixel data is complete."""

    path: Path
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    series_number: int | None
    instance_number: int | None
    image_position: tuple[float, float, float] | None
    image_orientation: tuple[float, float, float, float, float, float] | None
    modality: str
    transfer_syntax_uid: str
    rows: int | None
    columns: int | None
    samples_per_pixel: int
    bits_allocated: int | None
    number_of_frames: int
    pixel_problem: str | None
    read_seconds: float


@dataclass(frozen=True)
class FileProblem:
    """A file that could not be read, and why."""

    path: Path
    reason: str


@dataclass
class Series:
    """The instances of one SeriesInstanceUID, in slice order (see `group_studies`)."""

    series_uid: str
    series_number: int | None
    modality: str
    instances: list[Instance]
    _volume: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def complete_instances(self) -> list[Instance]:
        """Return the instances whose pixel data is complete."""
        return [instance for instance in self.instances if instance.pixel_problem is None]

    def volume(self) -> np.ndarray:
        """Return the slices in Hounsfield units, float32 of shape (frames, rows, columns).

        Each instance is read in full and its pixels scaled by RescaleSlope and
        RescaleIntercept (defaults 1 and 0); multi-frame instances add all their frames.
        Computed on the first call and cached.

        Raises
        ------
        PixelDecodeError
            A slice cannot be decoded (e.g. JPEG 2000 without the optional decoders), is not
            grayscale, or differs in size from the first slice.
        """
        if self._volume is None:
            if not self.instances:
                raise ValueError(f"series {self.series_uid} has no instances")
            first = self.instances[0]
            shape = (first.rows or 0, first.columns or 0)
            total = sum(instance.number_of_frames for instance in self.instances)
            volume = np.empty((total, *shape), dtype=np.float32)
            start = 0
            for instance in self.instances:
                frames = _hounsfield_frames(instance, shape)
                volume[start : start + len(frames)] = frames
                start += len(frames)
            self._volume = volume
        return self._volume


@dataclass(frozen=True)
class Study:
    """The series of one StudyInstanceUID, ordered by SeriesNumber then SeriesInstanceUID."""

    study_uid: str
    series: list[Series]

    @property
    def instances(self) -> list[Instance]:
        """Return every instance of the study."""
        return [instance for series in self.series for instance in series.instances]


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


def _read_header(stream: BinaryIO, name: str | os.PathLike[str]) -> _Header:
    """Read a dataset up to its pixel data, checking it is DICOM (see `is_dicom`).

    ``force`` is only passed to pydicom once the group 0008 bytes were seen.

    Raises
    ------
    DicomReadError
        Not DICOM, or the header is cut short or corrupt.
    """
    reader = _PrefixReader(stream)
    pixel: list[_PixelElement] = []

    def at_pixel_data(tag: BaseTag, vr: str | None, length: int) -> bool:
        if tag in _PIXEL_TAGS:
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
        for keyword, meta_keyword in (
            ("SOPClassUID", "MediaStorageSOPClassUID"),
            ("SOPInstanceUID", "MediaStorageSOPInstanceUID"),
        ):
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
    if length != _UNDEFINED_LENGTH and start + length != stop:
        raise DicomReadError(
            name, f"DICOM header cut short or corrupt: element {tag} at offset {start}"
        )


def _extent(element: RawDataElement | DataElement) -> tuple[BaseTag, int, int]:
    """Return an element's tag, value offset and length (undefined for parsed sequences)."""
    if isinstance(element, RawDataElement):
        return element.tag, element.value_tell, element.length
    return element.tag, element.file_tell or 0, _UNDEFINED_LENGTH


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


def read_instance(path: str | os.PathLike[str]) -> Instance:
    """Read the header of one DICOM file, never its pixel data.

    The pixel data is checked from the element's declared length and the bytes left in the
    file: for native syntaxes it must hold Rows × Columns × SamplesPerPixel × BitsAllocated/8 ×
    NumberOfFrames bytes; for encapsulated ones the first fragment must be whole.

    Raises
    ------
    DicomReadError
        The file is not DICOM, cannot be opened, or its header is cut short or corrupt.
    """
    with _open(path) as stream:
        return _read(stream, Path(path), os.fstat(stream.fileno()).st_size)


def read_stream_instance(stream: BinaryIO, path: str | os.PathLike[str] | None = None) -> Instance:
    """Read the header of a DICOM stream (e.g. a ZIP entry), never its pixel data.

    The stream is read forwards as in `is_dicom` and not closed; `path` (default: the stream's
    ``name``) names it in the Instance and in errors. The bytes after the header are not read,
    so pixel data is only checked against its declared length: a stream cut inside its pixel
    data passes here, where `read_instance` on the unpacked file would flag it.

    Raises
    ------
    DicomReadError
        The stream is not DICOM, or its header is cut short or corrupt.
    """
    return _read(stream, Path(path or getattr(stream, "name", "<stream>")), None)


def _read(stream: BinaryIO, path: Path, size: int | None) -> Instance:
    """Read a header and check its pixel data against `size` bytes of file (None: unknown)."""
    started = perf_counter()
    header = _read_header(stream, path)
    try:
        instance = _instance(path, header)
        problem = _pixel_problem(instance, header.pixel, stream, size)
    except OSError as exc:
        raise DicomReadError(path, f"cannot read: {exc.strerror or exc}") from exc
    except (ValueError, TypeError) as exc:  # an attribute value pydicom cannot convert
        raise DicomReadError(path, f"invalid header value: {exc}") from exc
    return replace(instance, pixel_problem=problem, read_seconds=perf_counter() - started)


def _instance(path: Path, header: _Header) -> Instance:
    """Collect the attributes of a header into an Instance (pixels not checked yet)."""
    ds = header.dataset
    meta = ds.file_meta
    return Instance(
        path=path,
        study_uid=str(ds.get("StudyInstanceUID") or ""),
        series_uid=str(ds.get("SeriesInstanceUID") or ""),
        sop_instance_uid=str(ds.get("SOPInstanceUID") or meta.get("MediaStorageSOPInstanceUID")),
        sop_class_uid=str(ds.get("SOPClassUID") or meta.get("MediaStorageSOPClassUID")),
        series_number=_int_or_none(ds, "SeriesNumber"),
        instance_number=_int_or_none(ds, "InstanceNumber"),
        image_position=_floats_or_none(ds, "ImagePositionPatient", 3),  # type: ignore[arg-type]
        image_orientation=_floats_or_none(ds, "ImageOrientationPatient", 6),  # type: ignore[arg-type]
        modality=str(ds.get("Modality") or ""),
        transfer_syntax_uid=str(header.transfer_syntax_uid),
        rows=_int_or_none(ds, "Rows"),
        columns=_int_or_none(ds, "Columns"),
        samples_per_pixel=_int_or_none(ds, "SamplesPerPixel") or 1,
        bits_allocated=_int_or_none(ds, "BitsAllocated"),
        number_of_frames=_int_or_none(ds, "NumberOfFrames") or 1,
        pixel_problem=None,
        read_seconds=0.0,
    )


def _int_or_none(ds: Dataset, keyword: str) -> int | None:
    """Return an integer attribute, None when absent, empty or not a number."""
    try:
        return int(ds.get(keyword))
    except (TypeError, ValueError):
        return None


def _floats_or_none(ds: Dataset, keyword: str, count: int) -> tuple[float, ...] | None:
    """Return a multi-valued decimal attribute with exactly `count` values, else None."""
    try:
        values = tuple(float(value) for value in ds.get(keyword) or ())
    except (TypeError, ValueError):
        return None
    return values if len(values) == count else None


def _pixel_problem(
    instance: Instance, pixel: _PixelElement | None, stream: BinaryIO, size: int | None
) -> str | None:
    """Return why the pixel data is missing or incomplete, None when it is complete.

    With `size` None the bytes present are not checked, only the declared length.
    """
    if pixel is None:
        return "no pixel data"
    syntax = instance.transfer_syntax_uid
    if syntax == DeflatedExplicitVRLittleEndian:
        return "pixel data in Deflated Explicit VR Little Endian is not supported"
    encapsulated = syntax not in _NATIVE_SYNTAXES
    if pixel.length == _UNDEFINED_LENGTH:
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
    present = pixel.length if size is None else min(pixel.length, size - pixel.offset)
    if present < needed:
        return f"pixel data truncated: {present} of {needed} bytes"
    return None


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


def try_read_instance(path: str | os.PathLike[str]) -> Instance | FileProblem:
    """`read_instance`, with an unreadable file returned as its FileProblem instead of raised."""
    try:
        return read_instance(path)
    except DicomReadError as exc:
        return FileProblem(Path(path), exc.reason)


def split_results(
    results: Iterable[Instance | FileProblem],
) -> tuple[list[Instance], list[FileProblem]]:
    """Separate read results into instances and problems, keeping their order."""
    results = list(results)
    instances = [result for result in results if isinstance(result, Instance)]
    problems = [result for result in results if isinstance(result, FileProblem)]
    return instances, problems


def read_instances(
    paths: Iterable[str | os.PathLike[str]], workers: int = 2
) -> tuple[list[Instance], list[FileProblem]]:
    """Read many headers with a thread pool; both lists are sorted by path."""
    ordered = sorted({Path(path) for path in paths})
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return split_results(pool.map(try_read_instance, ordered))


def group_studies(instances: Iterable[Instance]) -> list[Study]:
    """Group instances by StudyInstanceUID, then SeriesInstanceUID.

    Studies come sorted by UID, their series by (SeriesNumber, None last; SeriesInstanceUID),
    and a series' instances in slice order: by ImagePositionPatient projected on the slice
    normal (from ImageOrientationPatient, else the z axis) when every instance has a position,
    then by InstanceNumber (None last), then SOPInstanceUID.
    """
    by_study: dict[str, dict[str, list[Instance]]] = {}
    for instance in instances:
        by_study.setdefault(instance.study_uid, {}).setdefault(instance.series_uid, []).append(
            instance
        )
    studies = []
    for study_uid in sorted(by_study):
        series = [_series(uid, members) for uid, members in by_study[study_uid].items()]
        series.sort(key=lambda s: (_none_last(s.series_number), s.series_uid))
        studies.append(Study(study_uid, series))
    return studies


def _series(series_uid: str, instances: list[Instance]) -> Series:
    """Build a Series with its instances in slice order."""
    instances = sorted(instances, key=lambda i: (i.sop_instance_uid, str(i.path)))
    orientation = next((i.image_orientation for i in instances if i.image_orientation), None)
    normal = (
        np.cross(orientation[:3], orientation[3:]) if orientation else np.array([0.0, 0.0, 1.0])
    )

    if all(i.image_position for i in instances):
        instances.sort(
            key=lambda i: (
                float(np.dot(normal, i.image_position)),  # type: ignore[arg-type]
                _none_last(i.instance_number),
            )
        )
    else:
        instances.sort(key=lambda i: _none_last(i.instance_number))
    first = instances[0]
    return Series(series_uid, first.series_number, first.modality, instances)


def _none_last(number: int | None) -> tuple[bool, int]:
    """Sort key putting None after every number."""
    return (number is None, number or 0)


def choose_series(study: Study) -> Series | None:
    """Return the series to analyse, holding only its instances with complete pixel data.

    Among series with at least one complete instance: the most complete instances; ties go to
    the lowest SeriesNumber (None last), then the lowest SeriesInstanceUID. None if no series
    has any complete instance.
    """
    candidates = [
        replace(series, instances=complete)
        for series in study.series
        if (complete := series.complete_instances)
    ]
    if not candidates:
        return None
    return min(
        candidates,
        key=lambda s: (-len(s.instances), _none_last(s.series_number), s.series_uid),
    )


def _hounsfield_frames(instance: Instance, shape: Sequence[int]) -> np.ndarray:
    """Read and decode one instance; return its frames in HU, float32 (frames, rows, columns)."""
    path = instance.path
    try:
        decoder = get_decoder(UID(instance.transfer_syntax_uid))
    except NotImplementedError as exc:
        raise PixelDecodeError(
            path, f"no pixel data decoder for transfer syntax {instance.transfer_syntax_uid}"
        ) from exc
    if not decoder.is_available:
        raise PixelDecodeError(
            path,
            f"decoding {UID(instance.transfer_syntax_uid).name} needs an optional decoder: "
            "pip install 'medscan[decoders]'",
        )
    if instance.samples_per_pixel != 1:
        raise PixelDecodeError(path, f"SamplesPerPixel {instance.samples_per_pixel}: not grayscale")
    try:
        # force: the file already passed _read_header, which is stricter than pydicom.
        ds = dcmread(path, force=True)
        if "TransferSyntaxUID" not in ds.file_meta:  # a raw dataset without file meta
            ds.file_meta.TransferSyntaxUID = UID(instance.transfer_syntax_uid)
        pixels = ds.pixel_array
        slope = float(ds.get("RescaleSlope") or 1)
        intercept = float(ds.get("RescaleIntercept") or 0)
    except Exception as exc:  # decoders raise anything from RuntimeError to struct.error
        raise PixelDecodeError(
            path, f"cannot decode pixel data: {type(exc).__name__}: {exc}"
        ) from exc
    frames = pixels.reshape(-1, *pixels.shape[-2:])
    if frames.shape != (instance.number_of_frames, *shape):
        raise PixelDecodeError(
            path, f"pixel data of shape {pixels.shape} does not fit a series of {tuple(shape)}"
        )
    return frames.astype(np.float32) * np.float32(slope) + np.float32(intercept)
