"""The service side of analysis: the app's model, threshold and limits, and scan analysis."""

from __future__ import annotations

import threading
from pathlib import Path
from time import perf_counter

from flask import Flask, current_app

from medscan.analyzer import Analysis, Model, ReportRow, analyze_files, load_model
from medscan.analyzer.model import model_factory
from medscan.models import ContentKind
from medscan.safezip import ArchiveError, NotEnoughDiskSpace, UnpackLimits, extract_archive
from medscan.workspace import work_dir

MODEL_EXTENSION = "medscan.model"
_LOADING = threading.Lock()


def register_model(app: Flask) -> None:
    """Load ``MEDSCAN_MODEL`` once at start, so a bad model stops the start, not a request.

    With a queue (``MEDSCAN_BROKER_URL``) the factory is only imported here: asynchronous runs
    are analysed by the workers, and a process that never analyses (an API process taking only
    asynchronous runs) never holds the model in memory; the first analysis loads it.
    """
    spec = app.config["MEDSCAN_MODEL"] or None
    if app.config["MEDSCAN_BROKER_URL"]:
        model_factory(spec)
    else:
        app.extensions[MODEL_EXTENSION] = load_model(spec)


def current_model() -> Model:
    """The model of the current app, loaded on first use when it was not at start."""
    extensions = current_app.extensions
    if MODEL_EXTENSION not in extensions:
        with _LOADING:
            if MODEL_EXTENSION not in extensions:
                extensions[MODEL_EXTENSION] = load_model(
                    current_app.config["MEDSCAN_MODEL"] or None
                )
    return extensions[MODEL_EXTENSION]


def unpack_limits() -> UnpackLimits:
    """The ZIP unpack limits of the current app."""
    return UnpackLimits(
        max_unzipped_mb=current_app.config["MEDSCAN_MAX_UNZIPPED_MB"],
        max_entries=current_app.config["MEDSCAN_MAX_ZIP_ENTRIES"],
    )


def analyze_stored_scan(path: Path, content_kind: str, file_name: str) -> Analysis:
    """Analyse a stored scan file; a ZIP scan is unpacked into a work folder removed afterwards.

    Raises ``NotEnoughDiskSpace`` (the server's problem, not the scan's); any other archive
    problem is the scan's Failure.
    """
    options = {
        "path_to_study": file_name,
        "model": current_model(),
        "threshold": current_app.config["MEDSCAN_THRESHOLD"],
    }
    if content_kind != ContentKind.ZIP:
        return analyze_files([path], names={path: file_name}, **options)
    started = perf_counter()
    with work_dir(Path(current_app.config["MEDSCAN_WORK_DIR"])) as folder:
        try:
            extraction = extract_archive(path, folder, unpack_limits(), nested=False)
        except NotEnoughDiskSpace:
            raise
        except ArchiveError as exc:
            row = ReportRow.failure(file_name, seconds=perf_counter() - started)
            return Analysis(row, None, exc.message)
        names = {file.disk_path: file.path for unit in extraction.units for file in unit.files}
        return analyze_files(names, names=names, **options)
