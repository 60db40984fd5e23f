"""Previews of real-world CT: each image is the one the model gets, in slice order and in HU."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.data import get_testdata_file

from medscan.analyzer.preview import WINDOWS, windowed
from tests.dicom_factory import write_ct_series, write_dataset
from tests.helpers import create_patient, upload, zip_of
from tests.realdata.samples import (
    COLUMNS,
    ENCODINGS,
    ROWS,
    SLICE_GAP,
    SLICES,
    classic_hu,
    localizer_series,
    reencode,
    write_legacy_enhanced,
)

#: The window whose grays tell the classic series' HU (-1024..~500) apart.
WINDOW = "bone"


@pytest.fixture
def app_config() -> dict:
    """A model that decodes the volume, so that analyses fail where decoding fails."""
    return {"MEDSCAN_MODEL": "tests.realdata.recording:RecordingModel"}


def scan_of(client, content: bytes, name: str) -> str:
    response = upload(client, create_patient(client), content, name)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def preview(client, scan: str, index: int, window: str = WINDOW) -> np.ndarray:
    response = client.get(f"/api/scans/{scan}/preview.png?index={index}&window={window}")
    assert response.status_code == 200, response.get_json()
    image = Image.open(io.BytesIO(response.data))
    assert image.mode == "L"
    return np.asarray(image)


def assert_previews_are(client, scan: str, volume: np.ndarray) -> None:
    """Every image of the scan's preview is `volume`'s image at that index, windowed."""
    for index, hu in enumerate(volume):
        np.testing.assert_array_equal(preview(client, scan, index), windowed(hu, WINDOWS[WINDOW]))
    response = client.get(f"/api/scans/{scan}/preview.png?index={len(volume)}")
    assert response.status_code == 400


def test_highdicom_enhanced_ct_previews_each_frame_in_slice_order(client, enhanced):
    scan = scan_of(client, enhanced.read_bytes(), "enhanced.dcm")
    (item,) = client.get(f"/api/scans/{scan}/series").get_json()["items"]
    assert item["images"] == SLICES and item["chosen"]
    assert (item["rows"], item["columns"]) == (ROWS, COLUMNS)
    assert item["spacing"][0] == pytest.approx(SLICE_GAP)
    assert_previews_are(client, scan, classic_hu())


def test_enhanced_ct_in_a_zip_beats_localizers(client, enhanced, tmp_path):
    scouts = localizer_series(tmp_path / "scout", 20)
    archive = zip_of(
        {
            "ct/enhanced.dcm": enhanced.read_bytes(),
            **{f"scout/{path.name}": path.read_bytes() for path in scouts},
        }
    )
    scan = scan_of(client, archive, "study.zip")
    items = client.get(f"/api/scans/{scan}/series").get_json()["items"]
    assert [(i["images"], i["chosen"], i["reason"]) for i in items] == [
        (20, False, "localizer"),
        (SLICES, True, None),
    ]
    assert items[1]["series_uid"] == dcmread(enhanced).SeriesInstanceUID
    assert_previews_are(client, scan, classic_hu())


def test_pydicom_data_enhanced_ct_frames_in_slice_order(client):
    path = Path(get_testdata_file("eCT_Supplemental.dcm"))
    ds = dcmread(path)
    transform = ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
    hu = ds.pixel_array * float(transform.RescaleSlope) + float(transform.RescaleIntercept)
    scan = scan_of(client, path.read_bytes(), path.name)
    # Ascending along the slice normal (-z here) the second stored frame comes first.
    assert_previews_are(client, scan, hu[::-1].astype(np.float32))


@pytest.mark.parametrize(
    "encoding",
    [e for e in ENCODINGS if e.lossless],
    ids=lambda e: e.name,
)
def test_reencoded_series_in_a_zip(client, classic, tmp_path, encoding):
    encoded = reencode(classic, encoding, tmp_path / "encoded")
    scan = scan_of(client, zip_of({f"s/{p.name}": p.read_bytes() for p in encoded}), "s.zip")
    assert_previews_are(client, scan, classic_hu())


def test_compressed_enhanced_ct_decodes_the_frame_shown(client, classic, tmp_path):
    jpeg_ls = next(e for e in ENCODINGS if e.transfer_syntax_uid == "1.2.840.10008.1.2.4.80")
    enhanced = write_legacy_enhanced(reencode(classic, jpeg_ls, tmp_path / "jls"), tmp_path / "e")
    scan = scan_of(client, zip_of({"e.dcm": enhanced.read_bytes()}), "e.zip")
    assert_previews_are(client, scan, classic_hu())


def no_image_reason(client, scan: str) -> str:
    response = client.get(f"/api/scans/{scan}/preview.png")
    assert response.status_code == 422 and response.mimetype == "application/json"
    body = response.get_json()
    assert body["error"] == "No image to preview"
    return body["details"]["reason"]


def test_a_syntax_without_decoder_is_422_with_its_reason(client, tmp_path):
    ds = dcmread(get_testdata_file("JPEG2000.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.92"  # JPEG 2000 Part 2, no decoder
    scan = scan_of(client, write_dataset(tmp_path / "part2.dcm", ds).read_bytes(), "part2.dcm")
    reason = no_image_reason(client, scan)
    assert "no pixel data decoder for transfer syntax JPEG 2000 Part 2" in reason
    assert reason in client.post(f"/api/scans/{scan}/analyze").get_json()["error"]


def test_a_series_of_mixed_image_sizes_is_422_as_its_analysis_fails(client, tmp_path):
    paths = write_ct_series(tmp_path, n_slices=3)
    odd = dcmread(paths[1])
    odd.Rows, odd.Columns = 8, 8
    odd.PixelData = odd.PixelData[: 8 * 8 * 2]
    odd.save_as(paths[1])
    scan = scan_of(client, zip_of({p.name: p.read_bytes() for p in paths}), "mixed.zip")
    assert no_image_reason(client, scan) == "images of 2 different sizes in the series"
    assert client.post(f"/api/scans/{scan}/analyze").get_json()["ok"] is False
