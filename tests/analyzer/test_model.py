"""Prediction validation, the stub model and load_model."""

from pathlib import Path

import numpy as np
import pytest

from medscan.analyzer import (
    ModelLoadError,
    Prediction,
    Series,
    StubModel,
    choose_series,
    group_studies,
    load_model,
    read_instances,
)
from tests.analyzer.sample_models import ConstantModel
from tests.dicom_factory import write_ct_series


def series_of(paths: list[Path]) -> Series:
    (study,) = group_studies(read_instances(paths)[0])
    series = choose_series(study)
    assert series is not None
    return series


@pytest.mark.parametrize("probability", [-0.01, 1.01, float("nan"), float("inf"), "0.5", True])
def test_prediction_refuses_bad_probabilities(probability: object) -> None:
    with pytest.raises(ValueError, match="probability"):
        Prediction(probability)  # type: ignore[arg-type]


def test_prediction_normalises_numbers_and_copies_extras() -> None:
    extras = {"a": 1}
    prediction = Prediction(np.float32(0.25), "nodule", extras)
    extras["a"] = 2
    assert type(prediction.probability) is float and prediction.probability == 0.25
    assert prediction.extras == {"a": 1}
    assert Prediction(1).probability == 1.0


def test_stub_is_deterministic_and_depends_on_the_instances(tmp_path: Path) -> None:
    paths = write_ct_series(tmp_path / "a", n_slices=5)
    first = StubModel().predict(series_of(paths))
    again = StubModel().predict(series_of(list(reversed(paths))))
    other = StubModel().predict(series_of(write_ct_series(tmp_path / "b", n_slices=5)))
    assert first == again
    assert first.probability != other.probability
    assert 0 <= first.probability < 1
    assert (first.finding, dict(first.extras)) == ("nodule", {"note": "stub output"})


def test_stub_never_reads_pixels(tmp_path: Path) -> None:
    paths = write_ct_series(tmp_path, n_slices=3)
    series = series_of(paths)
    for path in paths:
        path.unlink()
    assert 0 <= StubModel().predict(series).probability < 1


def test_stub_model_attributes() -> None:
    model = StubModel()
    assert (model.name, model.version, model.modalities) == ("stub", "1", None)


@pytest.mark.parametrize("spec", [None, ""])
def test_no_spec_gives_the_stub(spec: str | None) -> None:
    assert isinstance(load_model(spec), StubModel)


def test_load_model_from_a_class_once_per_process() -> None:
    model = load_model("tests.analyzer.sample_models:ConstantModel")
    assert isinstance(model, ConstantModel) and model.probability == 0.8
    assert load_model("tests.analyzer.sample_models:ConstantModel") is model


def test_load_model_from_a_function() -> None:
    model = load_model("tests.analyzer.sample_models:make_low_model")
    assert isinstance(model, ConstantModel) and model.probability == 0.1


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tests.analyzer.sample_models", "must look like 'package.module:Factory'"),
        (":ConstantModel", "must look like"),
        ("tests.analyzer.no_such_module:Model", "ModuleNotFoundError"),
        ("tests.analyzer.sample_models:Missing", "AttributeError"),
        ("tests.analyzer.sample_models:broken_factory", "failed: RuntimeError: weights not found"),
        ("tests.analyzer.sample_models:NotAModel", "has no version, predict()"),
    ],
)
def test_bad_specs_raise_model_load_error(spec: str, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message) as raised:
        load_model(spec)
    assert repr(spec) in str(raised.value) or "must look like" in message
