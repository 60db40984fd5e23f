"""Study analysis as a plain library (no Flask): DICOM headers in, a report row out.

``analyze_files`` is the entry point for a scan; ``analyze_study`` for a study already grouped
(bulk runs). Neither raises for bad input: problems become Failure rows with an error text.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Any

from medscan.analyzer.headers import (
    DicomReadError,
    FileProblem,
    Frame,
    Instance,
    is_dicom,
    read_instance,
    read_instances,
    read_stream_instance,
    split_results,
    try_read_instance,
)
from medscan.analyzer.model import Model, ModelLoadError, Prediction, StubModel, load_model
from medscan.analyzer.report import FAILURE, REPORT_KEYS, SUCCESS, ReportRow, csv_safe
from medscan.analyzer.series import LeftOut, Series, Study, choose_series, group_studies
from medscan.analyzer.volume import PixelDecodeError

__all__ = [
    "FAILURE",
    "REPORT_KEYS",
    "SUCCESS",
    "Analysis",
    "DicomReadError",
    "FileProblem",
    "Frame",
    "Instance",
    "LeftOut",
    "Model",
    "ModelLoadError",
    "PixelDecodeError",
    "Prediction",
    "ReportRow",
    "Series",
    "Study",
    "StubModel",
    "analyze_files",
    "analyze_study",
    "choose_series",
    "choose_study",
    "csv_safe",
    "group_studies",
    "is_dicom",
    "load_model",
    "no_dicom_reason",
    "no_series_reason",
    "read_instance",
    "read_instances",
    "read_stream_instance",
    "split_results",
    "try_read_instance",
]


@dataclass(frozen=True)
class Analysis:
    """The report row, the result object (None on Failure) and the reason of a Failure."""

    report: ReportRow
    result: dict[str, Any] | None
    error: str | None

    @property
    def ok(self) -> bool:
        """Return True when the study was analysed."""
        return self.report.processing_status == SUCCESS


def analyze_study(study: Study, *, path_to_study: str, model: Model, threshold: float) -> Analysis:
    """Analyse the chosen series of `study` (see `choose_series`) and apply `threshold`.

    ``pathology`` is 1 iff the probability >= `threshold`. The result's ``extras`` hold
    ``model``, ``model_version`` and ``threshold`` followed by the model's own extras (which
    cannot override those three). ``time_of_processing`` is the wall time of this call plus
    the header read time of the study's instances. Any exception from the model (a decoding
    error from ``series.volume()`` included) becomes a Failure whose error is the exception
    type and message. The study's left-out instances (see `Study.left_out`) are listed in
    the extras as ``left_out`` ``[{"path", "reason"}]`` when there are any.

    Raises
    ------
    ValueError
        `threshold` is not in [0, 1] (a configuration error, not bad input).
    """
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
    started = perf_counter()
    read_seconds = sum(instance.read_seconds for instance in study.instances)
    series = choose_series(study)

    def failure(series_uid: str, error: str) -> Analysis:
        seconds = perf_counter() - started + read_seconds
        row = ReportRow.failure(path_to_study, study.study_uid, series_uid, seconds)
        return Analysis(row, None, error)

    if series is None:
        largest = max(study.series, key=lambda s: s.images, default=None)
        return failure(largest.series_uid if largest else "", no_series_reason(study))
    accepted = getattr(model, "modalities", None)
    if accepted is not None and series.modality not in accepted:
        return failure(series.series_uid, f"modality {series.modality or '(none)'} not accepted")
    try:
        prediction = model.predict(series)
        if not isinstance(prediction, Prediction):
            raise TypeError(f"predict() returned {type(prediction).__name__}, not a Prediction")
    except Exception as exc:  # a model's failure is the study's failure, never the caller's
        return failure(series.series_uid, f"{type(exc).__name__}: {exc}")

    probability = prediction.probability
    pathology = int(probability >= threshold)
    extras = {"model": model.name, "model_version": model.version, "threshold": threshold}
    extras.update((key, value) for key, value in prediction.extras.items() if key not in extras)
    if left_out := study.left_out:
        extras["left_out"] = [{"path": item.path, "reason": item.reason} for item in left_out]
    result = {
        "has_pathology": bool(pathology),
        "label": (prediction.finding or "abnormal") if pathology else "normal",
        "confidence": probability if pathology else 1 - probability,
        "extras": extras,
    }
    row = ReportRow(
        path_to_study,
        study.study_uid,
        series.series_uid,
        probability,
        pathology,
        SUCCESS,
        perf_counter() - started + read_seconds,
    )
    return Analysis(row, result, None)


def no_series_reason(study: Study) -> str:
    """Why `choose_series` finds nothing in `study`, naming the first pixel problem."""
    problems = [i.pixel_problem for i in study.instances if i.pixel_problem]
    return "no image series with complete pixel data" + (f" ({problems[0]})" if problems else "")


def no_dicom_reason(problems: Sequence[FileProblem]) -> str:
    """Why a scan has no study: no readable DICOM file, naming the first file's problem."""
    detail = f" ({posixpath.basename(problems[0].name)}: {problems[0].reason})" if problems else ""
    return "no readable DICOM file" + detail


def analyze_files(
    paths: Iterable[str | os.PathLike[str]],
    *,
    path_to_study: str,
    model: Model,
    threshold: float,
    names: Mapping[Path, str] | None = None,
) -> Analysis:
    """Analyse one scan: a single file or every file of an unpacked ZIP scan.

    `names` maps each path to its name in the scan (the entry name in a ZIP), which decides
    folders, path order and the left-out list (default: the path). Files that are not DICOM
    are ignored. When the files hold several studies, the one whose chosen series has the
    most images is analysed (ties: most instances, then lowest StudyInstanceUID, then first
    name); when none has such a series, the study with the most instances gives the Failure
    row. No readable DICOM file at all is a Failure with empty UIDs.
    """
    started = perf_counter()
    instances, problems = read_instances(paths, names=names)
    studies = group_studies(instances)
    if not studies:
        row = ReportRow.failure(path_to_study, seconds=perf_counter() - started)
        return Analysis(row, None, no_dicom_reason(problems))

    return analyze_study(
        choose_study(studies), path_to_study=path_to_study, model=model, threshold=threshold
    )


def choose_study(studies: Sequence[Study]) -> Study:
    """The study of a scan that is analysed, among several (see `analyze_files`)."""

    def rank(study: Study) -> tuple[int, int, str, str]:
        chosen = choose_series(study)
        images = chosen.images if chosen else 0
        return (-images, -len(study.instances), study.study_uid, study.instances[0].name)

    return min(studies, key=rank)
