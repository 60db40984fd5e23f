"""The header walk (`explicit_vr.scan_header`) gives exactly what pydicom's reading gives.

Every file is read twice by `read_instance`: as it is, and with the walk switched off so that
pydicom reads it. Both must give the same Instance (read time aside) or the same error, for
every pydicom and pydicom-data sample, our synthetic files and their odd variants, files cut
anywhere in their header, and dcmtk/GDCM re-encodings.
"""

from __future__ import annotations

import io
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from unittest import mock

import pytest
from pydicom.data import get_testdata_files
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence

from medscan.analyzer import DicomReadError, Instance, headers, read_instance
from medscan.analyzer.explicit_vr import Unusual
from tests.dicom_factory import ct_dataset, write_ct_file, write_dataset
from tests.realdata.samples import ENCODINGS, reencode, write_classic_series

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on the odd files


@contextmanager
def pydicom_only() -> Iterator[None]:
    """`read_instance` without the walk: every file goes to pydicom."""
    with mock.patch.object(headers, "_scan", side_effect=Unusual("switched off")):
        yield


def outcome(path: Path) -> Instance | str:
    """The Instance `read_instance` gives (read time zeroed), or its error's reason."""
    try:
        return replace(read_instance(path), read_seconds=0.0)
    except DicomReadError as exc:
        return exc.reason


def walked(path: Path) -> bool:
    """Whether the walk reads `path` itself (without pydicom)."""
    with path.open("rb") as stream:
        try:
            scanned = headers._scan(stream, os.fstat(stream.fileno()).st_size)
            headers._scanned_instance(path, str(path), scanned)
        except Unusual:
            return False
    return True


def assert_same(paths: list[Path]) -> int:
    """Both ways give the same outcome for every path; returns how many the walk read."""
    walk = [outcome(path) for path in paths]
    with pydicom_only():
        pydicom = [outcome(path) for path in paths]
    for path, ours, theirs in zip(paths, walk, pydicom, strict=True):
        assert ours == theirs, path
    return sum(walked(path) for path in paths)


def test_pydicom_samples() -> None:
    paths = [Path(name) for name in get_testdata_files() if Path(name).is_file()]
    assert len(paths) > 200
    assert assert_same(paths) > 50


def test_synthetic_files(tmp_path: Path) -> None:
    paths = [write_ct_file(tmp_path / f"{n}.dcm", index=n, rows=8, columns=8) for n in range(3)]
    paths += write_classic_series(tmp_path / "classic")
    paths.append(write_ct_file(tmp_path / "raw.dcm", preamble=False))
    assert assert_same(paths) == len(paths) - 1


def variants() -> dict[str, Dataset]:
    """Datasets the walk must read as pydicom does, or leave to pydicom."""

    def changed(**attributes: object) -> Dataset:
        ds = ct_dataset(rows=4, columns=4)
        for keyword, value in attributes.items():
            if value is None:
                delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
        return ds

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "1", "DCM", "x"
    nested = Dataset()
    nested.ConceptNameCodeSequence = Sequence([item])
    icon = Dataset()
    icon.Rows, icon.Columns, icon.BitsAllocated, icon.SamplesPerPixel = 2, 2, 8, 1
    icon.PixelData = bytes(4)
    found = {
        "no pixel data": changed(PixelData=None),
        "sequence": changed(ProcedureCodeSequence=Sequence([item, item])),
        "nested sequences": changed(ContentSequence=Sequence([nested, Dataset()])),
        "empty sequence": changed(ProcedureCodeSequence=Sequence([])),
        "icon image": changed(IconImageSequence=Sequence([icon])),
        "no SeriesNumber": changed(SeriesNumber=None),
        "empty SeriesNumber": changed(SeriesNumber=""),
        "empty ImageType": changed(ImageType=""),
        "one ImageType": changed(ImageType="ORIGINAL"),
        "odd ImageType": changed(ImageType=["original ", "PRIMARY"]),
        "no position": changed(ImagePositionPatient=None),
        "two values of position": changed(ImagePositionPatient=[1, 2]),
        "no SOPInstanceUID": changed(SOPInstanceUID=None),
        "no SOPClassUID": changed(SOPClassUID=None),
        "one frame": changed(NumberOfFrames=1),
        "two frames": changed(NumberOfFrames=2),
        "no frames": changed(NumberOfFrames=0),
        "bad InstanceNumber": changed(InstanceNumber="918273"),  # see write_variant
        "padded InstanceNumber": changed(InstanceNumber=" 7"),
        "no character set": changed(SpecificCharacterSet=None),
        "ISO 2022 character sets": changed(SpecificCharacterSet=["", "ISO 2022 IR 100"]),
        "misspelt character set": changed(SpecificCharacterSet="ISO-IR 100"),
        "UTF-8": changed(SpecificCharacterSet="ISO_IR 192", PatientName="Jörg^Müller"),
        "functional groups": changed(SharedFunctionalGroupsSequence=Sequence([Dataset()])),
        "short pixel data": changed(PixelData=bytes(10)),
    }
    private = ct_dataset(rows=4, columns=4)
    block = private.private_block(0x0009, "MEDSCAN TEST", create=True)
    block.add_new(0x01, "LO", "private value")
    block.add_new(0x02, "OB", bytes(6))
    found["private tags"] = private
    unknown = ct_dataset(rows=4, columns=4)
    unknown.add_new(0x00191010, "UN", b"\x01\x02")
    unknown["Rows"].VR = "UN"
    unknown["Rows"].value = (4).to_bytes(2, "little")
    found["UN values"] = unknown
    padded = ct_dataset(rows=4, columns=4)
    padded.DataSetTrailingPadding = bytes(8)
    found["trailing padding"] = padded
    return found


def write_variant(path: Path, ds: Dataset, undefined_lengths: bool) -> Path:
    """Write `ds` as Part 10, its sequences and items of undefined length or not."""
    for element in ds.iterall():
        if element.VR == "SQ":
            element.is_undefined_length = undefined_lengths
            for child in element.value:
                child.is_undefined_length_sequence_item = undefined_lengths
    write_dataset(path, ds)
    path.write_bytes(path.read_bytes().replace(b"918273", b"x18273"))  # pydicom won't write it
    return path


@pytest.mark.parametrize("undefined_lengths", [True, False], ids=["undefined", "defined"])
def test_odd_variants(tmp_path: Path, undefined_lengths: bool) -> None:
    paths = [
        write_variant(tmp_path / f"{n}.dcm", ds, undefined_lengths)
        for n, ds in enumerate(variants().values())
    ]
    assert assert_same(paths) >= 12


def test_odd_file_meta(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    dcmwrite(buffer, ct_dataset(rows=4, columns=4), enforce_file_format=True)
    data = buffer.getvalue()
    explicit = b"1.2.840.10008.1.2.1\0"
    assert data.count(explicit) == 1
    paths = []
    for n, syntax in enumerate(
        [
            b"1.2.840.10008.1.2\0\0\0",  # implicit VR (the data is not)
            b"1.2.840.10008.1.2.2\0",  # big endian
            b"1.2.840.10008.1.2.5\0",  # RLE, native pixel data
            b"1.2.840.10008.1.2.1 ",
            b" 1.2.840.10008.1.2.1",
            b"1.2.3.4.5.6.7.8.9.10",
        ]
    ):
        paths.append(tmp_path / f"{n}.dcm")
        paths[-1].write_bytes(data.replace(explicit, syntax))
    paths.append(tmp_path / "no_group_length.dcm")
    paths[-1].write_bytes(data[:132] + data[144:])  # without (0002,0000)
    assert assert_same(paths) == 2  # the padded UID, and RLE (with malformed pixel data)


def test_files_cut_anywhere_in_their_header(tmp_path: Path) -> None:
    sources = [write_variant(tmp_path / "seq.dcm", variants()["nested sequences"], True)]
    sources += [Path(name) for name in get_testdata_files("CT_small.dcm")]
    sources += [Path(name) for name in get_testdata_files("JPEG2000.dcm")]
    rng = random.Random(16)
    paths = []
    for source in sources:
        data = source.read_bytes()
        with source.open("rb") as stream:
            pixel = headers._scan(stream, len(data)).pixel
        end = pixel[1] + 16 if pixel else len(data)
        offsets = sorted({*range(128, min(end, 600)), *rng.sample(range(128, end), 150), end})
        for offset in offsets:
            paths.append(tmp_path / f"{source.stem}_{offset}.dcm")
            paths[-1].write_bytes(data[:offset])
    assert assert_same(paths) > 10


@pytest.mark.parametrize("encoding", ENCODINGS, ids=lambda encoding: encoding.name)
def test_reencoded_files(tmp_path: Path, encoding: object) -> None:
    classic = write_classic_series(tmp_path / "classic")[:3]
    paths = reencode(classic, encoding, tmp_path / "encoded")  # type: ignore[arg-type]
    # GDCM's lossy files have ImageType "DERIVED \\PRIMARY...": a padded value, left to pydicom
    gdcm_lossy = encoding.command[0] == "gdcmconv" and not encoding.lossless  # type: ignore[attr-defined]
    left_to_pydicom = gdcm_lossy or "deflated" in encoding.name  # type: ignore[attr-defined]
    assert assert_same(paths) == (0 if left_to_pydicom else len(paths))
