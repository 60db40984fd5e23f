"""What a model receives from real-world CT: HU values, slice order, spacing, series choice."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

from medscan.analyzer import analyze_files
from tests.dicom_factory import ct_dataset, write_ct_series, write_dataset
from tests.realdata.recording import RecordingModel
from tests.realdata.samples import (
    COLUMNS,
    ENCODINGS,
    PIXEL_SPACING,
    ROWS,
    SERIES_UID,
    SLICE_GAP,
    SLICES,
    STUDY_UID,
    Encoding,
    classic_hu,
    localizer_series,
    reencode,
    write_legacy_enhanced,
)

SPACING = (SLICE_GAP, PIXEL_SPACING, PIXEL_SPACING)


def analyze(paths: list[Path], root: Path | None = None):
    """Analyse `paths` as one scan (names relative to `root`) with the recording model."""
    names = {path: path.relative_to(root).as_posix() for path in paths} if root else None
    return analyze_files(
        paths, path_to_study="scan", model=RecordingModel(), threshold=0.5, names=names
    )


def received_one(analysis, recording) -> object:
    assert analysis.ok, analysis.error
    (received,) = recording
    return received


def test_classic_series_in_slice_order_with_its_spacing(classic, recording) -> None:
    received = received_one(analyze(classic), recording)
    assert received.volume.dtype == np.float32
    np.testing.assert_array_equal(received.volume, classic_hu())
    assert received.spacing == pytest.approx(SPACING)
    assert received.series_uid == SERIES_UID


@pytest.mark.parametrize("encoding", ENCODINGS, ids=lambda encoding: encoding.name)
def test_reencoded_series_gives_the_same_volume(
    classic, tmp_path, recording, encoding: Encoding
) -> None:
    files = reencode(classic, encoding, tmp_path / "encoded")
    received = received_one(analyze(files), recording)
    expected = classic_hu()
    assert received.volume.shape == expected.shape
    if encoding.lossless:
        np.testing.assert_array_equal(received.volume, expected)
    else:
        assert np.abs(received.volume - expected).mean() < 25
        assert received.volume.mean() == pytest.approx(expected.mean(), abs=5)
        slice_means = received.volume.mean(axis=(1, 2))
        assert np.all(np.diff(slice_means) > 0)  # still in slice order
    assert received.spacing == pytest.approx(SPACING)


def test_highdicom_enhanced_ct_rescale_and_frame_order(enhanced, recording) -> None:
    ds = dcmread(enhanced, stop_before_pixels=True)
    assert "RescaleIntercept" not in ds  # only in the functional groups
    positions = [
        float(item.PlanePositionSequence[0].ImagePositionPatient[2])
        for item in ds.PerFrameFunctionalGroupsSequence
    ]
    assert positions != sorted(positions)  # highdicom stores the frames head first
    received = received_one(analyze([enhanced]), recording)
    np.testing.assert_array_equal(received.volume, classic_hu())
    assert received.spacing == pytest.approx(SPACING)


def test_pydicom_data_enhanced_ct_supplemental(recording) -> None:
    path = Path(get_testdata_file("eCT_Supplemental.dcm"))
    ds = dcmread(path)
    transform = ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
    expected = ds.pixel_array * float(transform.RescaleSlope) + float(transform.RescaleIntercept)
    received = received_one(analyze([path]), recording)
    assert received.volume.shape == (2, 512, 512)
    # Frames at z -159 and -149; the orientation's row direction is -x, so the slice normal
    # is -z and ascending along it the second frame comes first.
    np.testing.assert_array_equal(received.volume, expected[::-1].astype(np.float32))
    measures = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert received.spacing == pytest.approx((10.0, *map(float, measures.PixelSpacing)))


def test_enhanced_ct_wins_over_a_larger_instance_count_and_localizers_are_left_aside(
    enhanced, tmp_path, recording
) -> None:
    localizers = localizer_series(tmp_path / "loc", 20)
    fewer_images = write_ct_series(
        tmp_path / "small", n_slices=3, study_uid=STUDY_UID, series_number=1
    )
    received = received_one(analyze([enhanced, *fewer_images, *localizers]), recording)
    assert received.series_uid == dcmread(enhanced).SeriesInstanceUID
    assert received.volume.shape == (SLICES, ROWS, COLUMNS)


def test_a_study_of_only_localizers_falls_back_to_them(tmp_path, recording) -> None:
    received = received_one(analyze(localizer_series(tmp_path, 2)), recording)
    assert received.series_uid == STUDY_UID + ".9" and received.volume.shape[0] == 2


def test_without_positions_instance_number_orders_numerically(tmp_path, recording) -> None:
    paths = []
    for index in range(12):  # UIDs ...1, ...10, ...11, ...2 as text
        ds = ct_dataset(index=index, study_uid="1.2.3", series_uid="1.2.3.1")
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.3.1.{index + 1}"
        del ds.ImagePositionPatient
        paths.append(write_dataset(tmp_path / f"{index}.dcm", ds))
    received = received_one(analyze(paths), recording)
    means = received.volume.mean(axis=(1, 2))
    assert np.all(np.diff(means) == 100)  # slice k is offset by 100 × k
    assert received.spacing is None  # no positions, no slice spacing
    for ds_path in paths:  # and without InstanceNumber either: the UIDs' numeric order
        ds = dcmread(ds_path)
        del ds.InstanceNumber
        ds.save_as(ds_path)
    recording.clear()
    assert np.all(np.diff(received_one(analyze(paths), recording).volume.mean(axis=(1, 2))) > 0)


def test_uid_less_folders_are_never_one_volume(tmp_path, recording) -> None:
    paths = []
    for patient, n in (("anna", 3), ("boris", 4)):
        for path in write_ct_series(tmp_path / patient, n_slices=n):
            ds = dcmread(path)
            del ds.StudyInstanceUID, ds.SeriesInstanceUID
            ds.save_as(path)
            paths.append(path)
    analysis = analyze(paths, root=tmp_path)
    received = received_one(analysis, recording)
    assert received.volume.shape[0] == 4  # boris's folder alone
    assert {Path(name).parent.name for name in received.instance_names} == {"boris"}
    assert (analysis.report.study_uid, analysis.report.series_uid) == ("", "")


def test_a_copied_study_gives_the_report_of_the_study_alone(classic, tmp_path, recording) -> None:
    for folder in ("a", "b"):
        for path in classic:
            (tmp_path / folder).mkdir(exist_ok=True)
            shutil.copy(path, tmp_path / folder / path.name)
    alone = analyze(sorted((tmp_path / "a").iterdir()), root=tmp_path)
    twice = analyze(sorted(tmp_path.glob("*/*.dcm")), root=tmp_path)
    first, second = recording
    np.testing.assert_array_equal(first.volume, second.volume)
    assert replace(twice.report, time_of_processing=0) == replace(
        alone.report, time_of_processing=0
    )
    left_out = twice.result["extras"].pop("left_out")
    assert twice.result == alone.result and "left_out" not in alone.result["extras"]
    assert left_out == [
        {"path": f"b/{path.name}", "reason": f"duplicate of a/{path.name}"}
        for path in sorted(classic, key=lambda path: path.name)
    ]


def test_an_instance_with_short_pixel_data_is_left_out_and_said(classic, tmp_path, recording):
    files = [shutil.copy(path, tmp_path / path.name) for path in classic]
    short = Path(files[4])
    short.write_bytes(short.read_bytes()[:-100])
    analysis = analyze([Path(path) for path in files], root=tmp_path)
    received = received_one(analysis, recording)
    assert received.volume.shape[0] == SLICES - 1
    assert analysis.result["extras"]["left_out"] == [
        {
            "path": short.name,
            "reason": f"pixel data truncated: {ROWS * COLUMNS * 2 - 100} of "
            f"{ROWS * COLUMNS * 2} bytes",
        }
    ]


def test_decoder_crash_and_unknown_syntax_are_failures_with_a_reason(tmp_path) -> None:
    crashed = analyze([Path(get_testdata_file("emri_small_jpeg_2k_lossless_too_short.dcm"))])
    assert not crashed.ok and "cannot decode pixel data" in crashed.error
    ds = dcmread(get_testdata_file("JPEG2000.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.92"  # JPEG 2000 Part 2, no decoder
    part2 = analyze([write_dataset(tmp_path / "part2.dcm", ds)])
    assert not part2.ok
    assert "no pixel data decoder for transfer syntax JPEG 2000 Part 2" in part2.error


def test_a_frame_of_another_shape_is_a_failure_never_a_silent_success(tmp_path) -> None:
    paths = write_ct_series(tmp_path, n_slices=3, study_uid="1.5", series_uid="1.5.1")
    odd = dcmread(paths[1])
    odd.Rows, odd.Columns = 8, 8
    odd.PixelData = odd.PixelData[: 8 * 8 * 2]
    odd.save_as(paths[1])
    analysis = analyze(paths, root=tmp_path)
    assert not analysis.ok
    assert analysis.error.startswith("PixelDecodeError: 1_0001.dcm: pixel data of shape (8, 8)")
    assert analysis.report.series_uid == "1.5.1"


def test_the_decoders_extra_alone_decodes_every_compressed_encoding(classic, tmp_path) -> None:
    """Other decoders that happen to be installed (pyjpegls, GDCM, Pillow) are blocked."""
    folders = []
    for number, encoding in enumerate(ENCODINGS):
        folders.append(str(tmp_path / str(number)))
        reencode(classic[:2], encoding, Path(folders[-1]))
    code = (
        "import sys, pathlib\n"
        "sys.modules.update(dict.fromkeys(['jpeg_ls', 'gdcm', 'PIL']))\n"
        "from medscan.analyzer import choose_series, group_studies, read_instances\n"
        f"for folder in {folders!r}:\n"
        "    instances, _ = read_instances(pathlib.Path(folder).iterdir())\n"
        "    (study,) = group_studies(instances)\n"
        "    print(choose_series(study).volume().shape)\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:-1] == [f"(2, {ROWS}, {COLUMNS})"] * len(ENCODINGS)


def test_enhanced_ct_of_a_reencoded_series(classic, tmp_path, recording) -> None:
    jpeg_ls = next(e for e in ENCODINGS if e.transfer_syntax_uid == "1.2.840.10008.1.2.4.80")
    encoded = reencode(classic, jpeg_ls, tmp_path / "jls")
    enhanced = write_legacy_enhanced(encoded, tmp_path / "enhanced.dcm")
    received = received_one(analyze([enhanced]), recording)
    np.testing.assert_array_equal(received.volume, classic_hu())
