"""Sniffing, header reading, pixel checks, grouping, series choice and HU volumes."""

import io
import random
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

from medscan.analyzer import (
    DicomReadError,
    FileProblem,
    PixelDecodeError,
    Study,
    choose_series,
    group_studies,
    is_dicom,
    read_instance,
    read_instances,
    read_stream_instance,
)
from tests.dicom_factory import ct_dataset, write_ct_file, write_ct_series, write_dataset

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200)


def sample_file(name: str) -> Path:
    return Path(get_testdata_file(name))


def cut(source: Path, target: Path, size: int) -> Path:
    target.write_bytes(source.read_bytes()[:size])
    return target


def value_offset(path: Path, keyword: str) -> int:
    """Return where the value of `keyword` starts in the file."""
    return dcmread(path, stop_before_pixels=True).get_item(keyword).value_tell


class ForwardOnly:
    """A stream that can only be read forwards (no seek, no tell)."""

    def __init__(self, data: bytes) -> None:
        self._stream = io.BytesIO(data)
        self.bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.bytes_read += len(data)
        return data


# --- sniffing -------------------------------------------------------------------------------


def test_part10_and_raw_datasets_are_dicom(tmp_path: Path) -> None:
    part10 = write_ct_file(tmp_path / "part10.dcm")
    raw = write_ct_file(tmp_path / "raw.dcm", preamble=False)
    assert part10.read_bytes()[128:132] == b"DICM"
    assert raw.read_bytes()[:2] == b"\x08\x00"
    for path in (part10, raw, sample_file("ExplVR_LitEndNoMeta.dcm")):
        assert is_dicom(path)
        assert is_dicom(str(path))


def test_big_endian_raw_dataset_is_dicom() -> None:
    path = sample_file("ExplVR_BigEndNoMeta.dcm")
    assert is_dicom(path)
    assert read_instance(path).transfer_syntax_uid == "1.2.840.10008.1.2.2"


@pytest.mark.parametrize(
    "content",
    [
        PNG,
        b"patient notes\n" * 50,
        b"",
        bytes(128) + b"DICM" + random.Random(1).randbytes(4096),
        bytes(128) + b"DICM" + bytes(4096),
        b"\x08\x00" + random.Random(2).randbytes(4096),
    ],
    ids=["png", "text", "empty", "DICM+garbage", "DICM+zeros", "group 0008+garbage"],
)
@pytest.mark.filterwarnings("ignore:Expected implicit VR:UserWarning")  # pydicom on garbage
def test_other_content_is_not_dicom(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "scan.dcm"
    path.write_bytes(content)
    assert not is_dicom(path)
    assert not is_dicom(io.BytesIO(content))
    with pytest.raises(DicomReadError, match=str(path)):
        read_instance(path)


def test_raw_dataset_without_sop_uids_is_not_dicom(tmp_path: Path) -> None:
    ds = ct_dataset()
    del ds.SOPInstanceUID
    path = write_dataset(tmp_path / "raw.dcm", ds, preamble=False)
    assert not is_dicom(path)
    assert "SOPInstanceUID" in pytest.raises(DicomReadError, read_instance, path).value.reason


def test_file_cut_inside_header_is_not_dicom(tmp_path: Path) -> None:
    whole = write_ct_file(tmp_path / "whole.dcm")
    inside_value = cut(whole, tmp_path / "a.dcm", value_offset(whole, "StudyInstanceUID") + 5)
    inside_tag = cut(whole, tmp_path / "b.dcm", value_offset(whole, "Rows") - 3)
    for path in (inside_value, inside_tag):
        assert not is_dicom(path)
        with pytest.raises(DicomReadError, match="cut short"):
            read_instance(path)


def test_file_cut_inside_pixel_data_is_dicom_with_a_pixel_problem(tmp_path: Path) -> None:
    whole = write_ct_file(tmp_path / "whole.dcm", rows=16, columns=16)
    path = cut(whole, tmp_path / "cut.dcm", whole.stat().st_size - 100)
    assert is_dicom(path)
    assert read_instance(path).pixel_problem == "pixel data truncated: 412 of 512 bytes"


def test_sniffing_a_zip_entry_reads_only_the_header(tmp_path: Path) -> None:
    dcm = write_ct_file(tmp_path / "big.dcm", rows=256, columns=256)
    archive = tmp_path / "scan.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(dcm, "scan/big.dcm")
        zf.writestr("scan/preview.png", PNG)
    with zipfile.ZipFile(archive) as zf:
        with zf.open("scan/big.dcm") as stream:
            assert is_dicom(stream)
            assert stream.tell() < 256 * 256 * 2 // 4
        with zf.open("scan/preview.png") as stream:
            assert not is_dicom(stream)


def test_sniffing_a_forward_only_stream() -> None:
    data = sample_file("CT_small.dcm").read_bytes()
    stream = ForwardOnly(data)
    assert is_dicom(stream)  # type: ignore[arg-type]
    assert stream.bytes_read < len(data)
    assert not is_dicom(ForwardOnly(PNG))  # type: ignore[arg-type]


# --- reading headers ------------------------------------------------------------------------


def test_read_instance_collects_the_header(tmp_path: Path) -> None:
    path = write_ct_file(
        tmp_path / "a.dcm", index=3, study_uid="1.2.3", series_uid="1.2.3.4", series_number=7
    )
    instance = read_instance(path)
    ds = dcmread(path)
    assert instance.path == path
    assert (instance.study_uid, instance.series_uid) == ("1.2.3", "1.2.3.4")
    assert instance.sop_instance_uid == ds.SOPInstanceUID
    assert instance.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"
    assert (instance.series_number, instance.instance_number) == (7, 4)
    assert instance.image_position == (-100.0, -100.0, 7.5)
    assert instance.image_orientation == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    assert instance.modality == "CT"
    assert instance.transfer_syntax_uid == "1.2.840.10008.1.2.1"
    assert (instance.rows, instance.columns, instance.samples_per_pixel) == (16, 16, 1)
    assert (instance.bits_allocated, instance.number_of_frames) == (16, 1)
    assert instance.pixel_problem is None
    assert instance.read_seconds > 0


def test_missing_or_short_pixel_data_is_a_pixel_problem(tmp_path: Path) -> None:
    no_pixels = ct_dataset()
    del no_pixels.PixelData
    short = ct_dataset()
    short.PixelData = short.PixelData[:256]
    assert read_instance(write_dataset(tmp_path / "a.dcm", no_pixels)).pixel_problem == (
        "no pixel data"
    )
    assert read_instance(write_dataset(tmp_path / "b.dcm", short)).pixel_problem == (
        "pixel data truncated: 256 of 512 bytes"
    )


@pytest.mark.parametrize("frames", [-3, 10**9])
def test_an_unbelievable_number_of_frames_is_a_pixel_problem(tmp_path: Path, frames: int) -> None:
    ds = ct_dataset()
    ds.NumberOfFrames = frames
    instance = read_instance(write_dataset(tmp_path / "a.dcm", ds))
    assert instance.pixel_problem == f"NumberOfFrames {frames} not in 1..100000"
    (study,) = group_studies([instance])
    assert [item.reason for item in study.left_out] == [instance.pixel_problem]


def test_pydicom_truncated_sample_has_a_pixel_problem() -> None:
    instance = read_instance(sample_file("MR_truncated.dcm"))
    assert instance.pixel_problem == "pixel data truncated: 8130 of 8192 bytes"


def test_encapsulated_pixel_data_cut_in_its_first_fragment(tmp_path: Path) -> None:
    source = sample_file("JPEG2000.dcm")
    assert read_instance(source).pixel_problem is None
    path = cut(source, tmp_path / "j2k.dcm", source.stat().st_size - 10)
    assert is_dicom(path)
    assert read_instance(path).pixel_problem.startswith("pixel data truncated: first fragment")


def test_deflated_files_are_read_pixels_included(tmp_path: Path) -> None:
    path = sample_file("image_dfl.dcm")
    assert is_dicom(path)
    instance = read_instance(path)
    assert instance.transfer_syntax_uid == "1.2.840.10008.1.2.1.99"
    assert instance.pixel_problem is None
    (study,) = group_studies([instance])
    np.testing.assert_array_equal(choose_series(study).volume()[0], dcmread(path).pixel_array)
    short = ct_dataset()
    short.PixelData = short.PixelData[:256]
    short.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"
    assert read_instance(write_dataset(tmp_path / "short.dcm", short)).pixel_problem == (
        "pixel data truncated: 256 of 512 bytes"
    )
    with pytest.raises(DicomReadError, match="decompressing"):  # inflating is all or nothing
        read_instance(cut(path, tmp_path / "cut.dcm", path.stat().st_size // 2))


def test_read_stream_instance_from_a_zip_entry(tmp_path: Path) -> None:
    whole = write_ct_file(tmp_path / "a.dcm", study_uid="1.2.3", series_uid="1.2.3.4")
    short = ct_dataset()
    short.PixelData = short.PixelData[:256]
    archive = tmp_path / "scan.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(whole, "scan/a.dcm")
        zf.writestr("scan/cut.dcm", whole.read_bytes()[:-100])
        zf.writestr("scan/short.dcm", write_dataset(tmp_path / "s.dcm", short).read_bytes())
        zf.writestr("scan/notes.txt", "notes")
    with zipfile.ZipFile(archive) as zf:
        with zf.open("scan/a.dcm") as stream:
            instance = read_stream_instance(stream)
        from_file = replace(
            read_instance(whole, "scan/a.dcm"), file_path=instance.file_path, read_seconds=0
        )
        assert replace(instance, read_seconds=0) == from_file
        assert (instance.path, instance.study_uid, instance.series_uid) == (
            Path("scan/a.dcm"),
            "1.2.3",
            "1.2.3.4",
        )
        assert instance.pixel_problem is None
        with zf.open("scan/cut.dcm") as stream:  # only the declared length is known here
            assert read_stream_instance(stream).pixel_problem is None
        with zf.open("scan/short.dcm") as stream:
            assert read_stream_instance(stream).pixel_problem == (
                "pixel data truncated: 256 of 512 bytes"
            )
        with zf.open("scan/notes.txt") as stream, pytest.raises(DicomReadError, match="notes"):
            read_stream_instance(stream)


def test_unopenable_file_raises_dicom_read_error(tmp_path: Path) -> None:
    with pytest.raises(DicomReadError, match="cannot open") as raised:
        read_instance(tmp_path / "missing.dcm")
    assert isinstance(raised.value, ValueError)
    assert not is_dicom(tmp_path / "missing.dcm")


def test_read_instances_sorts_by_path_and_reports_problems(tmp_path: Path) -> None:
    paths = write_ct_series(tmp_path, n_slices=6, shuffle=True)
    (tmp_path / "notes.txt").write_text("not an image")
    everything = [*paths, tmp_path / "notes.txt"]
    instances, problems = read_instances(reversed(everything), workers=4)
    assert [i.path for i in instances] == sorted(paths)
    notes = tmp_path / "notes.txt"
    assert problems == [FileProblem(notes, problems[0].reason, str(notes))]
    assert "not DICOM" in problems[0].reason
    same, _ = read_instances(everything, workers=1)
    assert [i.sop_instance_uid for i in same] == [i.sop_instance_uid for i in instances]


# --- grouping and series choice -------------------------------------------------------------


def test_grouping_by_study_and_series(tmp_path: Path) -> None:
    big = write_ct_series(
        tmp_path / "big", n_slices=4, study_uid="1.9", series_uid="1.9.2", series_number=2
    )
    small = write_ct_series(
        tmp_path / "small", n_slices=2, study_uid="1.9", series_uid="1.9.1", series_number=1
    )
    other = write_ct_series(tmp_path / "other", n_slices=1, study_uid="1.1")
    instances, _ = read_instances([*big, *small, *other])
    studies = group_studies(instances)
    assert [s.study_uid for s in studies] == ["1.1", "1.9"]
    study = studies[1]
    assert [(s.series_uid, len(s.instances)) for s in study.series] == [("1.9.1", 2), ("1.9.2", 4)]
    assert len(study.instances) == 6
    chosen = choose_series(study)
    assert chosen is not None and chosen.series_uid == "1.9.2"
    assert [i.path for i in chosen.instances] == big


@pytest.mark.parametrize(
    ("numbers", "expected"),
    [((3, 2), "1.5.2"), ((2, 2), "1.5.1"), ((None, 4), "1.5.2")],
    ids=["lowest SeriesNumber", "then lowest UID", "None last"],
)
def test_series_tie_rule(
    tmp_path: Path, numbers: tuple[int | None, int | None], expected: str
) -> None:
    paths = []
    for uid, number in zip(("1.5.1", "1.5.2"), numbers, strict=True):
        paths += write_ct_series(
            tmp_path / uid, n_slices=3, study_uid="1.5", series_uid=uid, series_number=number
        )
    (study,) = group_studies(read_instances(paths)[0])
    assert choose_series(study).series_uid == expected


def test_incomplete_instances_are_left_out_before_comparing(tmp_path: Path) -> None:
    larger = write_ct_series(tmp_path / "a", n_slices=3, study_uid="1.7", series_uid="1.7.1")
    for path in larger[:2]:
        cut(path, path, path.stat().st_size - 10)
    smaller = write_ct_series(tmp_path / "b", n_slices=2, study_uid="1.7", series_uid="1.7.2")
    (study,) = group_studies(read_instances([*larger, *smaller])[0])
    chosen = choose_series(study)
    assert chosen.series_uid == "1.7.2"
    assert [i.path for i in chosen.instances] == smaller
    assert len(study.series[0].instances) == 3  # grouping itself keeps every instance


def test_no_complete_series_gives_none(tmp_path: Path) -> None:
    (study,) = group_studies([read_instance(sample_file("MR_truncated.dcm"))])
    assert choose_series(study) is None
    assert choose_series(Study("1.2", [])) is None


def test_shuffled_slices_come_out_in_position_order(tmp_path: Path) -> None:
    paths = write_ct_series(tmp_path, n_slices=8, shuffle=True)
    assert sorted(paths) != paths
    (study,) = group_studies(read_instances(paths)[0])
    (series,) = study.series
    assert [i.path for i in series.instances] == paths
    assert [i.image_position[2] for i in series.instances] == [2.5 * k for k in range(8)]


def test_position_beats_instance_number_and_follows_the_slice_normal(tmp_path: Path) -> None:
    paths = []
    for index in range(4):
        ds = ct_dataset(index=index, study_uid="1.3", series_uid="1.3.1", instance_number=9 - index)
        ds.ImageOrientationPatient = [1, 0, 0, 0, -1, 0]  # normal points to -z: feet first
        paths.append(write_dataset(tmp_path / f"{index}.dcm", ds))
    (study,) = group_studies(read_instances(paths)[0])
    assert [i.path for i in study.series[0].instances] == paths[::-1]


def test_without_positions_instance_number_then_uid_orders(tmp_path: Path) -> None:
    paths = []
    numbers_and_uids = [(2, "1.4.9"), (None, "1.4.1"), (1, "1.4.8"), (2, "1.4.3")]
    for index, (number, uid) in enumerate(numbers_and_uids):
        ds = ct_dataset(
            index=index,
            study_uid="1.4",
            series_uid="1.4.0",
            sop_instance_uid=uid,
            instance_number=number,
        )
        if number is None:
            del ds.InstanceNumber
        del ds.ImagePositionPatient
        paths.append(write_dataset(tmp_path / f"{index}.dcm", ds))
    (study,) = group_studies(read_instances(paths)[0])
    uids = [i.sop_instance_uid for i in study.series[0].instances]
    assert uids == ["1.4.8", "1.4.3", "1.4.9", "1.4.1"]


def test_files_without_series_uid_are_one_series_per_folder(tmp_path: Path) -> None:
    paths = []
    for folder, n in (("a", 2), ("b", 3)):
        (tmp_path / folder).mkdir()
        for index in range(n):
            ds = ct_dataset(index=index, study_uid="1.8")
            del ds.SeriesInstanceUID
            paths.append(write_dataset(tmp_path / folder / f"{index}.dcm", ds))
    names = {path: path.relative_to(tmp_path).as_posix() for path in paths}
    (study,) = group_studies(read_instances(paths, names=names)[0])
    assert [(s.series_uid, s.images) for s in study.series] == [("", 2), ("", 3)]
    assert choose_series(study).instances[0].name == "b/0.dcm"


def test_a_duplicate_keeps_the_first_complete_copy(tmp_path: Path) -> None:
    whole = write_ct_file(tmp_path / "b.dcm", sop_instance_uid="1.2.3.4.5")
    cut(whole, tmp_path / "a.dcm", whole.stat().st_size - 10)
    (study,) = group_studies(read_instances([tmp_path / "a.dcm", whole])[0])
    assert [i.path for i in study.instances] == [whole]
    assert [(item.path, item.reason) for item in study.left_out] == [
        (str(tmp_path / "a.dcm"), f"duplicate of {whole}")
    ]


def test_irregular_or_missing_geometry_gives_no_spacing(tmp_path: Path) -> None:
    regular = write_ct_series(tmp_path / "r", n_slices=3, series_uid="1.9.1")
    gap = write_ct_series(tmp_path / "g", n_slices=4, series_uid="1.9.2")
    gap[3].unlink()  # positions 0, 2.5, 5: regular
    gap = gap[:3]
    ds = dcmread(gap[2])
    ds.ImagePositionPatient = [-100, -100, 9.0]  # 0, 2.5, 9: irregular
    ds.save_as(gap[2])
    spacings = {
        s.series_uid: s.spacing
        for study in group_studies(read_instances([*regular, *gap])[0])
        for s in study.series
    }
    assert spacings == {"1.9.1": pytest.approx((2.5, 0.7, 0.7)), "1.9.2": None}
    (one,) = group_studies([read_instance(regular[0])])
    assert one.series[0].spacing is None


# --- volumes --------------------------------------------------------------------------------


def test_volume_is_hounsfield_units_in_slice_order(tmp_path: Path) -> None:
    def pixels(index: int, rows: int, columns: int) -> np.ndarray:
        return np.full((rows, columns), 10 * index, dtype=np.int16) + np.eye(rows, dtype=np.int16)

    paths = write_ct_series(
        tmp_path,
        n_slices=5,
        rows=8,
        columns=8,
        slope=2,
        intercept=-1024,
        pixel_fn=pixels,
        shuffle=True,
    )
    (study,) = group_studies(read_instances(paths)[0])
    series = choose_series(study)
    volume = series.volume()
    expected = np.stack([pixels(k, 8, 8) * 2.0 - 1024 for k in range(5)]).astype(np.float32)
    assert volume.dtype == np.float32
    assert volume.shape == (5, 8, 8)
    np.testing.assert_array_equal(volume, expected)
    assert series.volume() is volume


def test_volume_of_a_raw_dataset_without_file_meta(tmp_path: Path) -> None:
    path = write_ct_file(tmp_path / "raw.dcm", preamble=False, intercept=0)
    (study,) = group_studies([read_instance(path)])
    volume = choose_series(study).volume()
    np.testing.assert_array_equal(volume[0], np.arange(256).reshape(16, 16))


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "JPEG2000.dcm"])
def test_volume_of_compressed_samples_matches_pydicom(name: str) -> None:
    if name == "JPEG2000.dcm":
        pytest.importorskip("openjpeg", reason="needs pip install 'medscan[decoders]'")
    path = sample_file(name)
    (study,) = group_studies([read_instance(path)])
    ds = dcmread(path)
    expected = ds.pixel_array * float(ds.get("RescaleSlope", 1)) + float(
        ds.get("RescaleIntercept", 0)
    )
    np.testing.assert_array_equal(choose_series(study).volume()[0], expected.astype(np.float32))


def test_missing_decoder_names_the_extra_to_install() -> None:
    blocked = ["pylibjpeg", "openjpeg", "libjpeg", "rle", "PIL", "gdcm", "jpeg_ls", "pyjpegls"]
    code = (
        "import sys\n"
        f"sys.modules.update(dict.fromkeys({blocked!r}))\n"
        "from medscan.analyzer import *\n"
        f"(study,) = group_studies([read_instance({str(sample_file('JPEG2000.dcm'))!r})])\n"
        "try:\n"
        "    choose_series(study).volume()\n"
        "except PixelDecodeError as exc:\n"
        "    print(exc)\n"
    )
    root = Path(__file__).resolve().parents[2]
    output = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    assert "JPEG2000.dcm: decoding JPEG 2000" in output
    assert "pip install 'medscan[decoders]'" in output


def test_volume_refuses_slices_of_another_size(tmp_path: Path) -> None:
    paths = [
        write_ct_file(tmp_path / "a.dcm", index=0, study_uid="1.6", series_uid="1.6.1"),
        write_ct_file(
            tmp_path / "b.dcm", index=1, study_uid="1.6", series_uid="1.6.1", rows=8, columns=8
        ),
    ]
    (study,) = group_studies(read_instances(paths)[0])
    with pytest.raises(PixelDecodeError, match="b.dcm: pixel data of shape"):
        choose_series(study).volume()
