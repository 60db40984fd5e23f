"""The analysis service: built once by the app factory from the settings, kept in the app."""

from __future__ import annotations

from pathlib import Path

import pytest

from medscan import create_app
from medscan.analysis import ANALYSIS_EXTENSION, analysis_service
from medscan.analyzer import ModelLoadError
from medscan.config import ConfigError
from medscan.safezip import UnpackLimits

SAMPLE_MODELS = "tests.analyzer.sample_models"
# Never contacted: building the app only configures Celery.
BROKER_URL = "redis://127.0.0.1:1/0"


def folders(tmp_path: Path) -> dict[str, str]:
    return {"MEDSCAN_STORAGE_DIR": str(tmp_path / "s"), "MEDSCAN_WORK_DIR": str(tmp_path / "w")}


def test_the_factory_builds_the_service_from_the_settings(tmp_path):
    app = create_app(
        {
            "MEDSCAN_MODEL": f"{SAMPLE_MODELS}:make_low_model",
            "MEDSCAN_THRESHOLD": 0.3,
            "MEDSCAN_MAX_UNZIPPED_MB": 7,
            "MEDSCAN_MAX_ZIP_ENTRIES": 9,
            **folders(tmp_path),
        }
    )
    service = app.extensions[ANALYSIS_EXTENSION]
    assert service.model_loaded and service.model.probability == 0.1
    assert service.threshold == 0.3
    assert service.limits == UnpackLimits(max_unzipped_mb=7, max_entries=9)
    assert service.work_folder == tmp_path / "w" and service.work_folder.is_dir()
    for _ in range(2):
        with app.test_request_context():
            assert analysis_service() is service


@pytest.mark.parametrize("factory", ["no_such_module:Model", f"{SAMPLE_MODELS}:broken_factory"])
def test_a_bad_model_stops_the_start(tmp_path, factory):
    with pytest.raises(ModelLoadError):
        create_app({"MEDSCAN_MODEL": factory, **folders(tmp_path)})


def test_with_a_queue_the_model_is_imported_at_start_and_loaded_on_first_use(tmp_path):
    with pytest.raises(ModelLoadError, match="no_such_module"):
        create_app(
            {"MEDSCAN_MODEL": "no_such_module:Model", "MEDSCAN_BROKER_URL": BROKER_URL}
            | folders(tmp_path)
        )
    app = create_app(
        {"MEDSCAN_MODEL": f"{SAMPLE_MODELS}:broken_factory", "MEDSCAN_BROKER_URL": BROKER_URL}
        | folders(tmp_path)
    )
    service = app.extensions[ANALYSIS_EXTENSION]
    assert not service.model_loaded
    with pytest.raises(ModelLoadError, match="weights not found"):
        service.load_model_now()


def test_a_bad_threshold_stops_the_start(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSCAN_THRESHOLD", "2")
    with pytest.raises(ConfigError, match="MEDSCAN_THRESHOLD"):
        create_app(folders(tmp_path))
