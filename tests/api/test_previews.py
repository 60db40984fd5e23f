"""Series listing and previews (CONTRACT.md, Previews and series), through the HTTP API.

Every PNG is decoded with Pillow and its pixels compared with the HU the test wrote.
"""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from openapi_spec_validator import validate
from PIL import Image
from pydicom import dcmread
from pydicom.data import get_testdata_file

from medscan.analyzer.preview import WINDOWS, windowed
from tests.dicom_factory import ct_dataset, write_ct_series, write_dataset
from tests.helpers import assert_json_error, create_patient, stored_files, upload, zip_of

# HU of the four bands of `banded`: outside-the-scan padding, air, lung level, bone.
PADDING, AIR, LUNG_LEVEL, BONE = -3024, -1000, -600, 1000


@pytest.fixture
def patient_id(client) -> str:
    return create_patient(client)


def upload_bytes(client, patient_id: str, content: bytes, name: str) -> str:
    response = upload(client, patient_id, content, name)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def series_zip(files: list[Path], folder: str = "series") -> bytes:
    return zip_of({f"{folder}/{path.name}": path.read_bytes() for path in files})


def png_of(response) -> np.ndarray:
    """The response's PNG as a numpy array, after checking it is 8-bit grayscale."""
    assert response.status_code == 200, response.get_json()
    assert response.mimetype == "image/png"
    image = Image.open(io.BytesIO(response.data))
    assert image.format == "PNG" and image.mode == "L"
    return np.asarray(image)


def banded(index: int, rows: int, columns: int) -> np.ndarray:
    """Stored values (intercept -1024) of four horizontal bands: padding, air, -600 HU, bone."""
    hu = np.empty((rows, columns), np.int32)
    for band, value in enumerate((PADDING, AIR, LUNG_LEVEL, BONE)):
        hu[band * rows // 4 : (band + 1) * rows // 4] = value
    return (hu + 1024).astype(np.int16)


def band_values(image: np.ndarray) -> list[int]:
    """The gray of each band (each must be uniform)."""
    rows = image.shape[0]
    values = []
    for band in range(4):
        part = image[band * rows // 4 : (band + 1) * rows // 4]
        assert part.min() == part.max()
        values.append(int(part[0, 0]))
    return values


def slice_pixels(index: int, rows: int, columns: int) -> np.ndarray:
    """Slice `index` is uniform at 100 × index HU (stored with intercept -1024)."""
    return np.full((rows, columns), 1024 + 100 * index, np.int16)


def bone_gray(hu: float) -> int:
    """The gray of `hu` in the bone window."""
    return int(windowed(np.array([[hu]], np.float32), WINDOWS["bone"])[0, 0])


# --- the PNG --------------------------------------------------------------------------------


def test_windows_map_hu_to_gray_as_documented(client, patient_id, tmp_path):
    (path,) = write_ct_series(tmp_path, n_slices=1, rows=64, columns=48, pixel_fn=banded)
    scan = upload_bytes(client, patient_id, path.read_bytes(), "bands.dcm")
    lung = png_of(client.get(f"/api/scans/{scan}/preview.png"))
    assert lung.shape == (64, 48)  # under 512 px: the image keeps its own size
    # Lung (W1500/L-600): the level is mid-gray, bone white, scanner padding black; air at
    # -1000 HU lies inside this wide window (black is -1350 HU and below).
    assert band_values(lung) == [0, 60, 128, 255]
    assert np.array_equal(png_of(client.get(f"/api/scans/{scan}/preview.png?window=lung")), lung)
    mediastinum = png_of(client.get(f"/api/scans/{scan}/preview.png?window=mediastinum"))
    assert band_values(mediastinum) == [0, 0, 0, 255]  # air black, bone white
    bone = png_of(client.get(f"/api/scans/{scan}/preview.png?window=bone"))
    assert band_values(bone) == [0, 0, 0, 191]  # 1000 HU is below the top of W2000/L500


def test_window_levels_are_mid_gray():
    for window in WINDOWS.values():
        hu = np.array([[window.level, window.level - window.width / 2 - 1]], np.float32)
        assert windowed(hu, window).tolist() == [[128, 0]]


@pytest.mark.parametrize(
    ("rows", "columns", "size"),
    [(256, 512, (512, 256)), (600, 1024, (512, 300)), (1024, 256, (128, 512))],
)
def test_at_most_512_px_on_the_longer_side_with_the_aspect_ratio_kept(
    client, patient_id, tmp_path, rows, columns, size
):
    (path,) = write_ct_series(tmp_path, n_slices=1, rows=rows, columns=columns, pixel_fn=banded)
    scan = upload_bytes(client, patient_id, path.read_bytes(), "wide.dcm")
    image = png_of(client.get(f"/api/scans/{scan}/preview.png?window=mediastinum"))
    assert (image.shape[1], image.shape[0]) == size
    assert image[0, 0] == 0 and image[-1, -1] == 255  # the bands survive the resampling


# --- index ----------------------------------------------------------------------------------


def test_index_is_slice_order_default_the_middle_and_out_of_range_is_400(
    client, patient_id, tmp_path
):
    files = write_ct_series(tmp_path, n_slices=5, shuffle=True, pixel_fn=slice_pixels)
    scan = upload_bytes(client, patient_id, series_zip(files), "study.zip")
    url = f"/api/scans/{scan}/preview.png?window=bone"
    grays = [bone_gray(100 * index) for index in range(5)]
    assert len(set(grays)) == 5
    for index in range(5):
        assert np.all(png_of(client.get(f"{url}&index={index}")) == grays[index])
    middle = client.get(url)
    assert middle.data == client.get(f"{url}&index=2").data
    response = client.get(f"{url}&index=5")
    assert_json_error(response, 400)
    assert "less than 5" in response.get_json()["details"]["index"][0]
    for bad in ("-1", "x", "1.5", "9" * 30):
        assert_json_error(client.get(f"{url}&index={bad}"), 400)
    assert_json_error(client.get(f"/api/scans/{scan}/preview.png?window=soft"), 400)


# --- ETag -----------------------------------------------------------------------------------


def test_etag_answers_304_and_differs_by_window_and_index(client, patient_id, tmp_path):
    files = write_ct_series(tmp_path, n_slices=3)
    scan = upload_bytes(client, patient_id, series_zip(files), "study.zip")
    url = f"/api/scans/{scan}/preview.png"
    first = client.get(url)
    etag = first.headers["ETag"]
    assert etag.startswith('"') and first.headers["Cache-Control"] == "private, no-cache"
    assert client.get(url).headers["ETag"] == etag  # stable
    for match in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = client.get(url, headers={"If-None-Match": match})
        assert again.status_code == 304 and again.data == b""
        assert again.headers["ETag"] == etag
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    others = {client.get(f"{url}?window={w}").headers["ETag"] for w in ("mediastinum", "bone")}
    others.add(client.get(f"{url}?index=0").headers["ETag"])
    assert etag not in others and len(others) == 3


# --- nothing to preview, not found ----------------------------------------------------------


@pytest.mark.parametrize("name", ["rtplan.dcm", "test-SR.dcm"])
def test_a_scan_without_images_is_422_with_the_reason_and_lists_its_series(
    client, patient_id, name
):
    path = Path(get_testdata_file(name))
    scan = upload_bytes(client, patient_id, path.read_bytes(), name)
    response = client.get(f"/api/scans/{scan}/preview.png")
    assert_json_error(response, 422)
    body = response.get_json()
    assert body["error"] == "No image to preview"
    assert body["details"] == {"reason": "no image series with complete pixel data (no pixel data)"}
    (item,) = client.get(f"/api/scans/{scan}/series").get_json()["items"]
    ds = dcmread(path)
    assert item == {
        "series_uid": ds.SeriesInstanceUID,
        "series_number": int(ds.SeriesNumber) if "SeriesNumber" in ds else None,
        "modality": ds.Modality,
        "description": ds.get("SeriesDescription") or None,
        "images": 0,
        "rows": None,
        "columns": None,
        "spacing": None,
        "chosen": False,
        "reason": "no pixel data",
    }


def test_unknown_and_malformed_ids_are_404(client):
    for scan_id in ("6f1c0c7e-0000-4000-8000-000000000000", "not-a-uuid", "1" * 40):
        for path in ("series", "preview.png"):
            response = client.get(f"/api/scans/{scan_id}/{path}")
            assert_json_error(response, 404)
            assert response.get_json() == {"error": "Scan not found"}


def test_a_deleted_scan_is_404_and_leaves_no_file(client, app, patient_id, tmp_path):
    files = write_ct_series(tmp_path, n_slices=3)
    scan = upload_bytes(client, patient_id, series_zip(files), "study.zip")
    assert client.get(f"/api/scans/{scan}/preview.png").status_code == 200
    assert client.get(f"/api/scans/{scan}/series").status_code == 200
    work = Path(app.config["MEDSCAN_WORK_DIR"])
    assert not work.exists() or not any(work.iterdir())  # nothing unpacked, nothing cached
    assert client.delete(f"/api/v1/scans/{scan}").status_code == 204
    assert stored_files(app) == []
    assert_json_error(client.get(f"/api/scans/{scan}/preview.png"), 404)
    assert_json_error(client.get(f"/api/scans/{scan}/series"), 404)


# --- the series listing: the analysis' own choice -------------------------------------------


def localizers(folder: Path, study_uid: str, n: int) -> list[Path]:
    folder.mkdir()
    paths = []
    for index in range(n):
        ds = ct_dataset(index=index, study_uid=study_uid, series_uid=study_uid + ".9")
        ds.SeriesNumber = 9
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        paths.append(write_dataset(folder / f"loc{index}.dcm", ds))
    return paths


def test_listing_says_which_series_is_analysed_and_why_not_the_others(client, patient_id, tmp_path):
    study = "1.2.826.0.1.3680043.10.511.7"
    ct = write_ct_series(
        tmp_path / "ct",
        n_slices=4,
        rows=32,
        columns=24,
        study_uid=study,
        series_uid=study + ".2",
        series_number=2,
        pixel_fn=slice_pixels,
    )
    tie = write_ct_series(
        tmp_path / "tie", n_slices=4, study_uid=study, series_uid=study + ".3", series_number=3
    )
    small = write_ct_series(
        tmp_path / "small", n_slices=2, study_uid=study, series_uid=study + ".1", series_number=1
    )
    scouts = localizers(tmp_path / "loc", study, 6)
    named = {"ct": ct, "tie": tie, "small": small, "loc": scouts}
    archive = zip_of(
        {f"{folder}/{p.name}": p.read_bytes() for folder, paths in named.items() for p in paths}
    )
    scan = upload_bytes(client, patient_id, archive, "study.zip")
    items = client.get(f"/api/scans/{scan}/series").get_json()["items"]
    assert [(i["series_number"], i["images"], i["chosen"], i["reason"]) for i in items] == [
        (1, 2, False, "fewer images"),
        (2, 4, True, None),
        (3, 4, False, "as many images; the lower SeriesNumber (then SeriesInstanceUID) is chosen"),
        (9, 6, False, "localizer"),
    ]
    chosen = items[1]
    assert chosen["series_uid"] == study + ".2" and chosen["modality"] == "CT"
    assert (chosen["rows"], chosen["columns"]) == (32, 24)
    assert chosen["spacing"] == pytest.approx([2.5, 0.7, 0.7])
    analysed = client.post(f"/api/scans/{scan}/analyze").get_json()["report"]["series_uid"]
    assert analysed == chosen["series_uid"]
    image = png_of(client.get(f"/api/scans/{scan}/preview.png?index=3&window=bone"))
    assert image.shape == (32, 24)
    assert np.all(image == bone_gray(300))


def test_the_series_description_is_listed(client, patient_id, tmp_path):
    ds = ct_dataset(index=0, rows=20, columns=20)
    ds.SeriesDescription = "Thorax 1.0 B70f"
    path = write_dataset(tmp_path / "one.dcm", ds)
    scan = upload_bytes(client, patient_id, path.read_bytes(), "one.dcm")
    (item,) = client.get(f"/api/scans/{scan}/series").get_json()["items"]
    assert item["description"] == "Thorax 1.0 B70f" and item["images"] == 1
    assert item["spacing"] is None  # one slice: no slice spacing


def test_a_zip_scan_leaves_out_what_its_analysis_leaves_out(client, patient_id, tmp_path):
    files = write_ct_series(tmp_path, n_slices=4, pixel_fn=slice_pixels)
    entries = {f"s/{p.name}": p.read_bytes() for p in files}
    entries["s/" + files[0].name] = files[0].read_bytes()[:-64]  # pixel data cut short
    scan = upload_bytes(client, patient_id, zip_of(entries), "study.zip")
    (item,) = client.get(f"/api/scans/{scan}/series").get_json()["items"]
    assert item["images"] == 3
    extras = client.post(f"/api/scans/{scan}/analyze").get_json()["result"]["extras"]
    assert [entry["path"] for entry in extras["left_out"]] == ["s/" + files[0].name]
    first = png_of(client.get(f"/api/scans/{scan}/preview.png?index=0&window=bone"))
    assert np.all(first == bone_gray(100))


# --- memory ---------------------------------------------------------------------------------


def test_a_preview_of_a_multi_frame_instance_decodes_one_frame(client, patient_id, tmp_path):
    frames, rows, columns = 40, 256, 256
    ds = ct_dataset(index=0, rows=rows, columns=columns)
    ds.NumberOfFrames = frames
    ds.PixelData = (1024 + 10 * np.arange(frames, dtype="<i2")).repeat(rows * columns).tobytes()
    del ds.ImagePositionPatient  # no per-frame positions: frames in stored order
    path = write_dataset(tmp_path / "multi.dcm", ds)
    scan = upload_bytes(client, patient_id, path.read_bytes(), "multi.dcm")
    (item,) = client.get(f"/api/scans/{scan}/series").get_json()["items"]
    assert item["images"] == frames
    tracemalloc.start()
    try:
        response = client.get(f"/api/scans/{scan}/preview.png?index=31&window=bone")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.all(png_of(response) == bone_gray(310))
    pixel_bytes = frames * rows * columns * 2
    assert peak < pixel_bytes / 4, f"peak {peak} bytes for {pixel_bytes} bytes of pixel data"


# --- the OpenAPI document -------------------------------------------------------------------


def test_openapi_documents_both_operations(client):
    spec = client.get("/api/openapi.json").get_json()
    validate(spec)
    preview = spec["paths"]["/api/scans/{scan_id}/preview.png"]["get"]
    assert preview["operationId"] == "getScanPreview"
    png = preview["responses"]["200"]["content"]["image/png"]["schema"]
    assert png == {"type": "string", "format": "binary"}
    assert "ETag" in preview["responses"]["200"]["headers"]
    assert {"304", "400", "404", "422"} <= set(preview["responses"])
    window = next(p for p in preview["parameters"] if p["name"] == "window")
    assert window["schema"]["enum"] == list(WINDOWS) and window["schema"]["default"] == "lung"
    for name, preset in WINDOWS.items():
        text = f"`{name}` = width {preset.width:g}, level {preset.level:g} HU"
        assert text in window["description"]
        assert name in window["schema"]["x-enumDescriptions"]
    listing = spec["paths"]["/api/scans/{scan_id}/series"]["get"]
    assert listing["operationId"] == "listScanSeries"
    item = spec["components"]["schemas"]["SeriesItem"]
    assert set(item["required"]) == {
        "series_uid", "series_number", "modality", "description", "images", "rows", "columns",
        "spacing", "chosen", "reason",
    }  # fmt: skip
