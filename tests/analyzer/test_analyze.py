"""analyze_study / analyze_files: thresholds, failures, real samples, determinism."""

from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

from medscan.analyzer import (
    FAILURE,
    SUCCESS,
    Analysis,
    Prediction,
    Series,
    StubModel,
    analyze_files,
    analyze_study,
    group_studies,
    read_instances,
)
from tests.analyzer.sample_models import ConstantModel
from tests.dicom_factory import write_ct_series


class RaisingModel:
    """Fails on every series."""

    name = "raising"
    version = "0"
    modalities = None

    def predict(self, series: Series) -> Prediction:
        """Raise."""
        raise RuntimeError(f"out of memory on {len(series.instances)} slices")


class WrongOutputModel(RaisingModel):
    """Returns a bare float instead of a Prediction."""

    def predict(self, series: Series) -> Prediction:
        """Return the wrong type."""
        return 0.5  # type: ignore[return-value]


def analyze(paths: list[Path], model: object = None, threshold: float = 0.5) -> Analysis:
    return analyze_files(
        paths, path_to_study="scan.zip", model=model or StubModel(), threshold=threshold
    )


def without_time(analysis: Analysis) -> dict[str, object]:
    report = analysis.report.as_dict()
    del report["time_of_processing"]
    return {"report": report, "result": analysis.result, "error": analysis.error}


def test_success_on_a_generated_series(tmp_path: Path) -> None:
    paths = write_ct_series(tmp_path, n_slices=4, study_uid="1.2.3", series_uid="1.2.3.1")
    analysis = analyze(paths)
    report = analysis.report
    probability = StubModel().predict(group_studies(read_instances(paths)[0])[0].series[0])
    assert analysis.ok and analysis.error is None
    assert (report.path_to_study, report.study_uid, report.series_uid) == (
        "scan.zip",
        "1.2.3",
        "1.2.3.1",
    )
    assert report.processing_status == SUCCESS
    assert report.probability_of_pathology == probability.probability
    assert report.pathology == int(probability.probability >= 0.5)
    assert analysis.result["extras"] == {
        "model": "stub",
        "model_version": "1",
        "threshold": 0.5,
        "note": "stub output",
    }


def test_time_covers_header_reading(tmp_path: Path) -> None:
    paths = write_ct_series(tmp_path, n_slices=3)
    (study,) = group_studies(read_instances(paths)[0])
    analysis = analyze_study(study, path_to_study="s", model=StubModel(), threshold=0.5)
    assert analysis.report.time_of_processing >= sum(i.read_seconds for i in study.instances) > 0


@pytest.mark.parametrize(
    ("probability", "finding", "pathology", "label", "confidence"),
    [
        (0.5, "emphysema", 1, "emphysema", 0.5),
        (0.49, "emphysema", 0, "normal", 0.51),
        (0.9, None, 1, "abnormal", 0.9),
        (0.0, "emphysema", 0, "normal", 1.0),
    ],
)
def test_threshold(
    tmp_path: Path,
    probability: float,
    finding: str | None,
    pathology: int,
    label: str,
    confidence: float,
) -> None:
    paths = write_ct_series(tmp_path, n_slices=2)
    analysis = analyze(paths, ConstantModel(probability, finding), threshold=0.5)
    assert analysis.report.probability_of_pathology == probability
    assert analysis.report.pathology == pathology
    assert analysis.result["has_pathology"] is bool(pathology)
    assert analysis.result["label"] == label
    assert analysis.result["confidence"] == pytest.approx(confidence)
    assert analysis.result["extras"] == {
        "model": "constant",
        "model_version": "2.0",
        "threshold": 0.5,
        "slices": 2,
    }


def test_model_extras_cannot_override_the_provenance(tmp_path: Path) -> None:
    class Boastful(ConstantModel):
        def predict(self, series: Series) -> Prediction:
            return Prediction(0.7, None, {"model": "other", "threshold": 0.1, "x": 1})

    analysis = analyze(write_ct_series(tmp_path, n_slices=1), Boastful())
    assert analysis.result["extras"] == {
        "model": "constant",
        "model_version": "2.0",
        "threshold": 0.5,
        "x": 1,
    }


@pytest.mark.parametrize(
    ("model", "error"),
    [
        (RaisingModel(), "RuntimeError: out of memory on 3 slices"),
        (WrongOutputModel(), "TypeError: predict() returned float, not a Prediction"),
    ],
)
def test_model_errors_become_failure_rows(tmp_path: Path, model: object, error: str) -> None:
    paths = write_ct_series(tmp_path, n_slices=3, study_uid="1.2.3", series_uid="1.2.3.1")
    analysis = analyze(paths, model)
    assert not analysis.ok
    assert analysis.result is None
    assert analysis.error == error
    assert analysis.report.as_dict() | {"time_of_processing": 0} == {
        "path_to_study": "scan.zip",
        "study_uid": "1.2.3",
        "series_uid": "1.2.3.1",
        "probability_of_pathology": None,
        "pathology": None,
        "processing_status": FAILURE,
        "time_of_processing": 0,
    }


def test_a_model_refuses_other_modalities() -> None:
    path = Path(get_testdata_file("MR_small.dcm"))
    analysis = analyze([path], ConstantModel())
    ds = dcmread(path)
    assert analysis.error == "modality MR not accepted"
    assert analysis.report.processing_status == FAILURE
    assert (analysis.report.study_uid, analysis.report.series_uid) == (
        ds.StudyInstanceUID,
        ds.SeriesInstanceUID,
    )


def test_no_readable_dicom(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    for paths in ([notes], []):
        analysis = analyze(paths)
        assert analysis.error.startswith("no readable DICOM file")
        assert analysis.report.cells()[:6] == ("scan.zip", "", "", None, None, FAILURE)
    assert "notes.txt: not DICOM" in analyze([notes]).error


def test_all_instances_incomplete_keeps_the_uids(tmp_path: Path) -> None:
    big = write_ct_series(tmp_path / "a", n_slices=3, study_uid="1.8", series_uid="1.8.1")
    small = write_ct_series(tmp_path / "b", n_slices=2, study_uid="1.8", series_uid="1.8.2")
    for path in [*big, *small]:
        path.write_bytes(path.read_bytes()[:-20])
    analysis = analyze([*big, *small])
    assert analysis.report.cells()[1:6] == ("1.8", "1.8.1", None, None, FAILURE)
    assert analysis.error == (
        "no image series with complete pixel data (pixel data truncated: 492 of 512 bytes)"
    )


@pytest.mark.parametrize(
    ("sizes", "expected"), [((2, 3), "1.2.2"), ((3, 3), "1.2.1")], ids=["largest", "tie"]
)
def test_several_studies_the_largest_series_wins(
    tmp_path: Path, sizes: tuple[int, int], expected: str
) -> None:
    paths = []
    for uid, size in zip(("1.2.1", "1.2.2"), sizes, strict=True):
        paths += write_ct_series(tmp_path / uid, n_slices=size, study_uid=uid)
    assert analyze(paths).report.study_uid == expected


def test_same_files_same_report(tmp_path: Path) -> None:
    paths = write_ct_series(tmp_path, n_slices=6, shuffle=True)
    first = analyze(paths)
    assert without_time(analyze(list(reversed(paths)))) == without_time(first)
    assert without_time(analyze(paths)) == without_time(first)


@pytest.mark.parametrize(
    "name", ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "MR_small_RLE.dcm"]
)
def test_pydicom_samples_succeed_with_their_uids(name: str) -> None:
    path = Path(get_testdata_file(name))
    analysis = analyze([path])
    ds = dcmread(path)
    assert analysis.ok, analysis.error
    assert analysis.report.study_uid == ds.StudyInstanceUID
    assert analysis.report.series_uid == ds.SeriesInstanceUID


def test_pydicom_truncated_sample_fails_with_its_uids() -> None:
    path = Path(get_testdata_file("MR_truncated.dcm"))
    analysis = analyze([path])
    ds = dcmread(path, stop_before_pixels=True)
    assert analysis.report.processing_status == FAILURE
    assert analysis.report.probability_of_pathology is None
    assert (analysis.report.study_uid, analysis.report.series_uid) == (
        ds.StudyInstanceUID,
        ds.SeriesInstanceUID,
    )
    assert "pixel data truncated" in analysis.error


@pytest.mark.parametrize("threshold", [-0.1, 1.1, float("nan")])
def test_threshold_out_of_range_is_a_configuration_error(tmp_path: Path, threshold: float) -> None:
    with pytest.raises(ValueError, match="threshold"):
        analyze(write_ct_series(tmp_path, n_slices=1), threshold=threshold)
