"""Real-world CT through the HTTP API: the scan path (upload + analyze) and the bulk path."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import openpyxl
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

from tests.dicom_factory import write_ct_series
from tests.helpers import create_patient, post_archive, upload, zip_of
from tests.realdata.samples import (
    ENCODINGS,
    PIXEL_SPACING,
    SERIES_UID,
    SLICE_GAP,
    classic_hu,
    localizer_series,
    reencode,
)

SPACING = (SLICE_GAP, PIXEL_SPACING, PIXEL_SPACING)
DEFLATED = ENCODINGS[0]


@pytest.fixture
def app_config() -> dict:
    return {"MEDSCAN_MODEL": "tests.realdata.recording:RecordingModel"}


def test_scan_zip_enhanced_ct_beats_localizers_and_left_out_files_are_listed(
    client, enhanced, tmp_path, recording
):
    scouts = localizer_series(tmp_path / "scout", 20)
    scouts[0].write_bytes(scouts[0].read_bytes()[:-64])
    archive = zip_of(
        {
            "ct/enhanced.dcm": enhanced.read_bytes(),
            "copy/enhanced.dcm": enhanced.read_bytes(),
            **{f"scout/{path.name}": path.read_bytes() for path in scouts},
        }
    )
    scan = upload(client, create_patient(client), archive, "study.zip").get_json()["id"]
    body = client.post(f"/api/scans/{scan}/analyze").get_json()
    assert body["ok"], body
    (received,) = recording
    assert (
        received.series_uid == body["report"]["series_uid"] == dcmread(enhanced).SeriesInstanceUID
    )
    np.testing.assert_array_equal(received.volume, classic_hu())
    assert received.spacing == pytest.approx(SPACING)
    assert body["result"]["extras"]["mean_hu"] == pytest.approx(float(classic_hu().mean()))
    assert body["result"]["extras"]["left_out"] == [
        {"path": "ct/enhanced.dcm", "reason": "duplicate of copy/enhanced.dcm"},
        {"path": "scout/loc0.dcm", "reason": "pixel data truncated: 448 of 512 bytes"},
    ]


def test_scan_of_one_deflated_file(client, classic, tmp_path, recording):
    (deflated,) = reencode(classic[:1], DEFLATED, tmp_path)
    scan = upload(client, create_patient(client), deflated.read_bytes(), "slice.dcm")
    body = client.post(f"/api/scans/{scan.get_json()['id']}/analyze").get_json()
    assert body["ok"], body
    assert "left_out" not in body["result"]["extras"]
    np.testing.assert_array_equal(recording[0].volume, classic_hu()[:1])


def test_bulk_run_rows_volumes_and_skipped_lines(client, classic, tmp_path, recording):
    entries: dict[str, bytes] = {}
    for patient, n in (("anna", 3), ("boris", 4)):  # no Study/Series UIDs at all
        for path in write_ct_series(tmp_path / patient, n_slices=n):
            ds = dcmread(path)
            del ds.StudyInstanceUID, ds.SeriesInstanceUID
            buffer = io.BytesIO()
            ds.save_as(buffer)
            entries[f"{patient}/{path.name}"] = buffer.getvalue()
    deflated = reencode(classic, DEFLATED, tmp_path / "deflated")
    for folder in ("deflated", "backup"):
        entries.update({f"{folder}/{path.name}": path.read_bytes() for path in deflated})
    enhanced = Path(get_testdata_file("eCT_Supplemental.dcm"))
    entries["enhanced/eCT_Supplemental.dcm"] = enhanced.read_bytes()
    entries["anna/cut.dcm"] = entries.pop(next(iter(entries)))[:-100]  # one of anna's 3
    response = post_archive(client, zip_of(entries))
    assert response.status_code == 201, response.get_json()
    run = client.get(f"/api/bulk-runs/{response.get_json()['id']}").get_json()
    rows = [
        (item["path_to_study"], item["study_uid"], item["processing_status"])
        for item in run["items"]
    ]
    assert rows == [
        ("anna", "", "Success"),
        ("backup", "1.2.826.0.1.3680043.10.511.1", "Success"),
        ("boris", "", "Success"),
        ("enhanced/eCT_Supplemental.dcm", dcmread(enhanced).StudyInstanceUID, "Success"),
    ]  # "backup" sorts before "deflated", so its copies are the ones used
    volumes = {item.series_uid or item.instance_names[0].split("/")[0]: item for item in recording}
    assert volumes["anna"].volume.shape[0] == 2 and volumes["boris"].volume.shape[0] == 4
    np.testing.assert_array_equal(volumes[SERIES_UID].volume, classic_hu())
    assert volumes[SERIES_UID].spacing == pytest.approx(SPACING)
    assert volumes[dcmread(enhanced).SeriesInstanceUID].volume.shape == (2, 512, 512)
    workbook = openpyxl.load_workbook(
        io.BytesIO(client.get(f"/api/bulk-runs/{run['id']}/report.xlsx").data), read_only=True
    )
    errors = list(workbook["Errors"].iter_rows(min_row=2, values_only=True))
    assert errors == [
        ("anna/cut.dcm", "Skipped", "pixel data truncated: 412 of 512 bytes"),
        *[
            (f"deflated/{path.name}", "Skipped", f"duplicate of backup/{path.name}")
            for path in sorted(deflated, key=lambda path: path.name)
        ],
    ]
