"""The analysis service: what the app analyses with (its model, threshold, ZIP unpack limits
and work folder), built once at start and kept in ``app.extensions``; scan analysis."""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from pathlib import Path
from time import perf_counter

from flask import Flask, current_app

from medscan.analyzer import Analysis, Model, ReportRow, analyze_files, load_model
from medscan.analyzer.model import model_factory
from medscan.models import ContentKind
from medscan.safezip import ArchiveError, NotEnoughDiskSpace, UnpackLimits, extract_archive
from medscan.workspace import sweep_stale_work_dirs, work_dir

ANALYSIS_EXTENSION = "medscan.analysis"


class AnalysisService:
    """The model, the threshold (``pathology = 1`` iff probability >= it), the ZIP unpack limits
    and the work folder of an app.

    The model is loaded when the service is built, so that a bad model stops the start, not a
    request; with ``lazy_model`` only its factory is imported then, and the first use loads it.
    """

    def __init__(
        self,
        model_spec: str | None,
        threshold: float,
        limits: UnpackLimits,
        work_folder: Path,
        *,
        lazy_model: bool = False,
    ) -> None:
        self.threshold = threshold
        self.limits = limits
        self.work_folder = work_folder
        self._model_spec = model_spec
        self._model: Model | None = None
        self._loading = threading.Lock()
        if lazy_model:
            model_factory(model_spec)
        else:
            self._model = load_model(model_spec)

    @property
    def model(self) -> Model:
        """The model, loaded on first use when it was not at start."""
        return self.load_model_now()

    def load_model_now(self) -> Model:
        """The model, loaded now unless it is (a worker loads it before its first run)."""
        if self._model is None:
            with self._loading:
                if self._model is None:
                    self._model = load_model(self._model_spec)
        return self._model

    @property
    def model_loaded(self) -> bool:
        """Whether the model is in memory (an API process with a queue may never load it)."""
        return self._model is not None

    def work_dir(self) -> AbstractContextManager[Path]:
        """A fresh folder in the work folder, removed on exit whatever happens."""
        return work_dir(self.work_folder)

    def analyze_stored_scan(self, path: Path, content_kind: str, file_name: str) -> Analysis:
        """Analyse a stored scan file; a ZIP scan is unpacked into a work folder removed afterwards.

        Raises ``NotEnoughDiskSpace`` (the server's problem, not the scan's); any other archive
        problem is the scan's Failure.
        """
        options = {
            "path_to_study": file_name,
            "model": self.model,
            "threshold": self.threshold,
        }
        if content_kind != ContentKind.ZIP:
            return analyze_files([path], names={path: file_name}, **options)
        started = perf_counter()
        with self.work_dir() as folder:
            try:
                extraction = extract_archive(path, folder, self.limits, nested=False)
            except NotEnoughDiskSpace:
                raise
            except ArchiveError as exc:
                row = ReportRow.failure(file_name, seconds=perf_counter() - started)
                return Analysis(row, None, exc.message)
            names = {file.disk_path: file.path for unit in extraction.units for file in unit.files}
            return analyze_files(names, names=names, **options)


def register_analysis(app: Flask) -> None:
    """Build the app's analysis service from its settings, once, and make its work folder, swept
    of what killed workers left in it.

    With a queue (``MEDSCAN_BROKER_URL``) the model is loaded on first use: asynchronous runs
    are analysed by the workers, and a process that never analyses (an API process taking only
    asynchronous runs) never holds the model in memory.
    """
    config = app.config
    service = AnalysisService(
        config["MEDSCAN_MODEL"] or None,
        config["MEDSCAN_THRESHOLD"],
        UnpackLimits(
            max_unzipped_mb=config["MEDSCAN_MAX_UNZIPPED_MB"],
            max_entries=config["MEDSCAN_MAX_ZIP_ENTRIES"],
        ),
        Path(config["MEDSCAN_WORK_DIR"]),
        lazy_model=bool(config["MEDSCAN_BROKER_URL"]),
    )
    service.work_folder.mkdir(parents=True, exist_ok=True)
    sweep_stale_work_dirs(service.work_folder)
    app.extensions[ANALYSIS_EXTENSION] = service


def analysis_service() -> AnalysisService:
    """The analysis service of the current app."""
    return current_app.extensions[ANALYSIS_EXTENSION]
