"""Scan analysis and stored reports (CONTRACT.md, Analysis), through the HTTP API."""

from __future__ import annotations

import uuid
from pathlib import Path

import pydicom
import pytest
import sqlalchemy as sa
from pydicom.data import get_testdata_file

from medscan import create_app
from medscan.analyzer import REPORT_KEYS, ModelLoadError, Prediction, Series
from medscan.extensions import db
from medscan.models import Scan
from tests.analyzer.sample_models import ConstantModel
from tests.dicom_factory import write_ct_file, write_ct_series
from tests.helpers import assert_json_error, create_patient, upload, zip_of


@pytest.fixture
def patient_id(client) -> str:
    return create_patient(client)


def analyze(client, scan_id: str) -> dict:
    response = client.post(f"/api/scans/{scan_id}/analyze")
    assert response.status_code == 200
    body = response.get_json()
    assert list(body["report"]) == list(REPORT_KEYS)  # exactly the seven keys, in order
    return body


def upload_file(client, patient_id, path: Path, name: str | None = None) -> str:
    response = upload(client, patient_id, path.read_bytes(), name or path.name)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def test_analyze_a_ct_file_and_read_the_stored_report(client, patient_id, tmp_path):
    path = write_ct_file(tmp_path / "ct1.dcm", study_uid="1.2.3.4", series_uid="1.2.3.4.5")
    scan_id = upload_file(client, patient_id, path)
    body = analyze(client, scan_id)
    report, result = body["report"], body["result"]
    assert body["ok"] is True and "error" not in body
    assert report["path_to_study"] == "ct1.dcm"
    assert report["study_uid"] == "1.2.3.4" and report["series_uid"] == "1.2.3.4.5"
    assert report["processing_status"] == "Success"
    probability = report["probability_of_pathology"]
    assert 0 <= probability <= 1
    assert report["pathology"] == int(probability >= 0.5)
    assert result["has_pathology"] is (report["pathology"] == 1)
    if report["pathology"]:
        assert result["label"] == "nodule" and result["confidence"] == probability
    else:
        assert result["label"] == "normal" and result["confidence"] == pytest.approx(
            1 - probability
        )
    assert result["extras"]["model"] == "stub" and result["extras"]["note"] == "stub output"
    assert result["extras"]["threshold"] == 0.5 and "model_version" in result["extras"]
    assert report["time_of_processing"] >= 0

    stored = client.get(f"/api/scans/{scan_id}/report")
    assert stored.status_code == 200
    assert stored.get_json()["report"] == report
    assert stored.get_json()["processed_at"].endswith("Z")


def test_analysis_is_deterministic_and_reanalysis_replaces_the_report(client, patient_id, tmp_path):
    scan_id = upload_file(client, patient_id, write_ct_file(tmp_path / "ct.dcm"))
    first = analyze(client, scan_id)
    first_at = client.get(f"/api/scans/{scan_id}/report").get_json()["processed_at"]
    second = analyze(client, scan_id)
    stored = client.get(f"/api/scans/{scan_id}/report").get_json()
    strip = lambda report: {k: v for k, v in report.items() if k != "time_of_processing"}  # noqa: E731
    assert strip(first["report"]) == strip(second["report"]) == strip(stored["report"])
    assert stored["report"]["time_of_processing"] == second["report"]["time_of_processing"]
    assert stored["processed_at"] > first_at


def test_report_before_any_analysis_is_404(client, patient_id, tmp_path):
    scan_id = upload_file(client, patient_id, write_ct_file(tmp_path / "ct.dcm"))
    assert_json_error(client.get(f"/api/scans/{scan_id}/report"), 404, "Report not found")


@pytest.mark.parametrize("raw_id", [str(uuid.uuid4()), "bad-id"])
def test_unknown_scan_is_404_for_analyze_and_report(client, raw_id):
    assert_json_error(client.post(f"/api/scans/{raw_id}/analyze"), 404, "Scan not found")
    assert_json_error(client.get(f"/api/scans/{raw_id}/report"), 404, "Scan not found")


def test_zip_scan_is_analysed_and_its_work_folder_removed(client, app, patient_id, tmp_path):
    files = write_ct_series(tmp_path / "s", n_slices=6, study_uid="9.8.7", series_uid="9.8.7.1")
    content = zip_of({f"s/{f.name}": f.read_bytes() for f in files})
    response = upload(client, patient_id, content, "series.zip")
    body = analyze(client, response.get_json()["id"])
    assert body["ok"] is True
    assert body["report"]["path_to_study"] == "series.zip"
    assert (body["report"]["study_uid"], body["report"]["series_uid"]) == ("9.8.7", "9.8.7.1")
    assert list(Path(app.config["MEDSCAN_WORK_DIR"]).iterdir()) == []


@pytest.mark.parametrize(
    "name", ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "MR_small_RLE.dcm"]
)
def test_real_pydicom_samples_succeed_with_their_uids(client, patient_id, name):
    path = Path(get_testdata_file(name))
    body = analyze(client, upload_file(client, patient_id, path))
    dataset = pydicom.dcmread(path, stop_before_pixels=True)
    assert body["ok"] is True
    assert body["report"]["study_uid"] == dataset.StudyInstanceUID
    assert body["report"]["series_uid"] == dataset.SeriesInstanceUID


def test_truncated_pixel_data_is_a_stored_failure_never_normal(client, patient_id):
    path = Path(get_testdata_file("MR_truncated.dcm"))
    scan_id = upload_file(client, patient_id, path)
    body = analyze(client, scan_id)
    report = body["report"]
    assert body["ok"] is False and body["result"] is None and body["error"]
    assert report["processing_status"] == "Failure"
    assert report["probability_of_pathology"] is None and report["pathology"] is None
    dataset = pydicom.dcmread(path, stop_before_pixels=True)
    assert report["study_uid"] == dataset.StudyInstanceUID  # a Failure still carries its UIDs
    assert client.get(f"/api/scans/{scan_id}/report").get_json()["report"] == report


def test_missing_stored_file_is_a_failure(client, app, patient_id, tmp_path):
    scan_id = upload_file(client, patient_id, write_ct_file(tmp_path / "ct.dcm"))
    for path in Path(app.config["MEDSCAN_STORAGE_DIR"]).rglob(uuid.UUID(scan_id).hex):
        path.unlink()
    body = analyze(client, scan_id)
    assert body["ok"] is False and body["report"]["pathology"] is None


class TestCustomModel:
    @pytest.fixture
    def app_config(self):
        return {"MEDSCAN_MODEL": "tests.analyzer.sample_models:make_half_model"}

    def test_model_from_setting_is_used_and_threshold_is_inclusive(
        self, client, patient_id, tmp_path
    ):
        scan_id = upload_file(client, patient_id, write_ct_file(tmp_path / "ct.dcm"))
        body = analyze(client, scan_id)
        assert body["report"]["probability_of_pathology"] == 0.5
        assert body["report"]["pathology"] == 1  # 0.5 >= 0.5
        assert body["result"] == {
            "has_pathology": True,
            "label": "emphysema",
            "confidence": 0.5,
            "extras": {"model": "constant", "model_version": "2.0", "threshold": 0.5, "slices": 1},
        }

    def test_modality_not_accepted_is_a_failure(self, client, patient_id):
        body = analyze(
            client, upload_file(client, patient_id, Path(get_testdata_file("MR_small.dcm")))
        )
        assert body["ok"] is False and "modality MR not accepted" in body["error"]


class TestCustomModelAndThreshold:
    @pytest.fixture
    def app_config(self):
        return {
            "MEDSCAN_MODEL": "tests.analyzer.sample_models:make_half_model",
            "MEDSCAN_THRESHOLD": 0.6,
        }

    def test_threshold_setting_moves_the_decision(self, client, patient_id, tmp_path):
        scan_id = upload_file(client, patient_id, write_ct_file(tmp_path / "ct.dcm"))
        body = analyze(client, scan_id)
        assert body["report"]["pathology"] == 0
        assert body["result"]["label"] == "normal" and body["result"]["confidence"] == 0.5


class TestRaisingModel:
    @pytest.fixture
    def app_config(self):
        return {"MEDSCAN_MODEL": "tests.analyzer.sample_models:RaisingModel"}

    def test_model_error_is_a_failure_row_with_nulls(self, client, patient_id, tmp_path):
        scan_id = upload_file(client, patient_id, write_ct_file(tmp_path / "ct.dcm"))
        body = analyze(client, scan_id)
        assert body["ok"] is False and body["result"] is None
        assert "CUDA out of memory" in body["error"]
        assert body["report"]["processing_status"] == "Failure"
        assert body["report"]["pathology"] is None
        assert body["report"]["probability_of_pathology"] is None


class ScanDeletingModel(ConstantModel):
    """Deletes every scan while it predicts, as a DELETE racing the analysis would."""

    def predict(self, series: Series) -> Prediction:
        """Delete the scans in a transaction of their own, then predict."""
        with db.engine.begin() as connection:
            connection.execute(sa.delete(Scan))
        return super().predict(series)


class TestScanDeletedDuringAnalysis:
    @pytest.fixture
    def app_config(self):
        return {"MEDSCAN_MODEL": "tests.api.test_analysis:ScanDeletingModel"}

    def test_analysis_of_a_scan_deleted_meanwhile_is_404(self, client, patient_id, tmp_path):
        scan_id = upload_file(client, patient_id, write_ct_file(tmp_path / "ct.dcm"))
        response = client.post(f"/api/scans/{scan_id}/analyze")
        assert_json_error(response, 404, "Scan not found")
        assert client.get(f"/api/v1/scans/{scan_id}").status_code == 404


def test_unloadable_model_stops_the_start(tmp_path):
    with pytest.raises(ModelLoadError, match="no_such_module"):
        create_app(
            {
                "MEDSCAN_MODEL": "no_such_module:Model",
                "MEDSCAN_STORAGE_DIR": str(tmp_path),
                "MEDSCAN_WORK_DIR": str(tmp_path / "w"),
            }
        )
