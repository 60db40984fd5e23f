"""ReportRow: the seven keys, their order, validation and CSV safety."""

import json

import pytest

from medscan.analyzer.report import FAILURE, REPORT_KEYS, SUCCESS, ReportRow, csv_safe
from tests.helpers import CONTRACT_KEYS


def success_row(**changes: object) -> ReportRow:
    values = {
        "path_to_study": "batch1/study.zip",
        "study_uid": "1.2.3",
        "series_uid": "1.2.3.4",
        "probability_of_pathology": 0.75,
        "pathology": 1,
        "processing_status": SUCCESS,
        "time_of_processing": 1.5,
    }
    values.update(changes)
    return ReportRow.from_dict(values)


def test_keys_are_the_seven_in_order() -> None:
    assert REPORT_KEYS == CONTRACT_KEYS
    row = success_row()
    assert list(row.as_dict()) == list(CONTRACT_KEYS)
    assert list(json.loads(json.dumps(row.as_dict()))) == list(CONTRACT_KEYS)
    assert row.cells() == ("batch1/study.zip", "1.2.3", "1.2.3.4", 0.75, 1, "Success", 1.5)


def test_failure_row_has_null_model_fields() -> None:
    row = ReportRow.failure("a.dcm", "1.2", seconds=0.25)
    assert row.as_dict() == {
        "path_to_study": "a.dcm",
        "study_uid": "1.2",
        "series_uid": "",
        "probability_of_pathology": None,
        "pathology": None,
        "processing_status": FAILURE,
        "time_of_processing": 0.25,
    }
    assert row.csv_cells() == ["a.dcm", "1.2", "", "", "", "Failure", "0.25"]


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("batch/a=b.zip", "batch/a=b.zip"),
        (None, ""),
        (0.1, "0.1"),
        (1, "1"),
    ],
)
def test_csv_safe(value: str | float | None, cell: str) -> None:
    assert csv_safe(value) == cell


def test_csv_cells_neutralise_formulas_in_paths() -> None:
    row = success_row(path_to_study="=cmd|' /C calc'!A0")
    assert row.csv_cells() == [
        "'=cmd|' /C calc'!A0",
        "1.2.3",
        "1.2.3.4",
        "0.75",
        "1",
        "Success",
        "1.5",
    ]


def test_from_dict_round_trip_and_json_numbers() -> None:
    row = success_row(probability_of_pathology=1, time_of_processing=0)
    assert row.probability_of_pathology == 1.0 and isinstance(row.probability_of_pathology, float)
    assert isinstance(row.time_of_processing, float)
    assert ReportRow.from_dict(json.loads(json.dumps(row.as_dict()))) == row


@pytest.mark.parametrize(
    "data",
    [
        {key: None for key in CONTRACT_KEYS[:-1]},
        {**success_row().as_dict(), "error": None},
        [("path_to_study", "x")],
    ],
    ids=["missing key", "unknown key", "not a mapping"],
)
def test_from_dict_requires_exactly_the_seven_keys(data: object) -> None:
    with pytest.raises(ValueError, match="report"):
        ReportRow.from_dict(data)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "changes",
    [
        {"processing_status": "Ok"},
        {"probability_of_pathology": None},
        {"probability_of_pathology": 1.5},
        {"probability_of_pathology": float("nan")},
        {"pathology": 2},
        {"pathology": True},
        {"pathology": None},
        {"time_of_processing": -0.1},
        {"time_of_processing": float("inf")},
        {"study_uid": None},
        {"processing_status": FAILURE},
    ],
)
def test_invalid_rows_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        success_row(**changes)


def test_failure_never_reads_as_no_pathology() -> None:
    with pytest.raises(ValueError, match="Failure"):
        ReportRow("a", "", "", None, 0, FAILURE, 0.0)
