"""The seven report keys, defined once: a scan report, a bulk XLSX row and a bulk CSV row."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

SUCCESS = "Success"
FAILURE = "Failure"

#: First characters that make a spreadsheet read a cell as a formula.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

Cell = str | float | int | None


def csv_safe(value: Cell) -> str:
    """Return `value` as a CSV cell: None as "", numbers via str(), formula-like text after "'"."""
    if value is None:
        return ""
    if isinstance(value, str):
        return "'" + value if value.startswith(FORMULA_PREFIXES) else value
    return str(value)


@dataclass(frozen=True)
class ReportRow:
    """One analysed study.

    On Failure both model fields are None: a failed study must never read as "no pathology".
    Construction validates every field, so a row that exists is a valid row.
    """

    path_to_study: str
    study_uid: str
    series_uid: str
    probability_of_pathology: float | None
    pathology: int | None
    processing_status: str
    time_of_processing: float

    def __post_init__(self) -> None:
        for name in ("path_to_study", "study_uid", "series_uid"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string, got {getattr(self, name)!r}")
        seconds = self.time_of_processing
        if not _is_number(seconds) or not 0 <= seconds < math.inf:
            raise ValueError(f"time_of_processing must be a finite number >= 0, got {seconds!r}")
        object.__setattr__(self, "time_of_processing", float(seconds))
        if self.processing_status == FAILURE:
            if self.probability_of_pathology is not None or self.pathology is not None:
                raise ValueError("a Failure row has null probability_of_pathology and pathology")
        elif self.processing_status == SUCCESS:
            probability = self.probability_of_pathology
            if not _is_number(probability) or not 0 <= probability <= 1:
                raise ValueError(f"probability_of_pathology must be in [0, 1], got {probability!r}")
            object.__setattr__(self, "probability_of_pathology", float(probability))
            if type(self.pathology) is not int or self.pathology not in (0, 1):
                raise ValueError(f"pathology must be 0 or 1, got {self.pathology!r}")
        else:
            raise ValueError(
                f"processing_status must be {SUCCESS!r} or {FAILURE!r}, "
                f"got {self.processing_status!r}"
            )

    @classmethod
    def failure(
        cls, path_to_study: str, study_uid: str = "", series_uid: str = "", seconds: float = 0.0
    ) -> ReportRow:
        """Return a Failure row (model fields null)."""
        return cls(path_to_study, study_uid, series_uid, None, None, FAILURE, seconds)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReportRow:
        """Build a row from a mapping holding exactly the seven report keys."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a report must be an object, got {type(data).__name__}")
        missing = [key for key in REPORT_KEYS if key not in data]
        unknown = sorted(str(key) for key in data if key not in REPORT_KEYS)
        if missing or unknown:
            raise ValueError(f"report keys wrong: missing {missing}, unknown {unknown}")
        return cls(**{key: data[key] for key in REPORT_KEYS})

    def cells(self) -> tuple[Cell, ...]:
        """Return the values in key order, None for null (XLSX cells)."""
        return tuple(getattr(self, key) for key in REPORT_KEYS)

    def as_dict(self) -> dict[str, Cell]:
        """Return the JSON object with the seven keys in order."""
        return dict(zip(REPORT_KEYS, self.cells(), strict=True))

    def csv_cells(self) -> list[str]:
        """Return the values as CSV strings (see `csv_safe`)."""
        return [csv_safe(value) for value in self.cells()]


def _is_number(value: object) -> bool:
    """Return True for int/float (not bool) values that are not NaN."""
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


#: The seven report keys in order: the fields of ReportRow.
REPORT_KEYS: tuple[str, ...] = tuple(field.name for field in fields(ReportRow))
