"""The work of an asynchronous bulk run, as a queue worker does it (medscan.queue)."""

from __future__ import annotations

import uuid

from flask import current_app

from medscan.analysis import current_model, unpack_limits
from medscan.bulk.studies import process_archive
from medscan.bulk.tracking import (
    ARCHIVE,
    INTERNAL_ERROR,
    RunStopped,
    Tracker,
    claim,
    fail,
    finish,
    remove_folder,
    run_folder,
)
from medscan.safezip import ArchiveError

MISSING_ARCHIVE = "uploaded archive not found (is MEDSCAN_RUNS_DIR shared with the API?)"


def bulk_run(run_id: str) -> None:
    """Unpack and analyse a queued run, then store its report or its failure.

    A run that is not ``queued`` any more (cancelled or deleted meanwhile, or a redelivered
    message of a run already taken) is left alone. Whatever happens, the run's folder (its
    archive and unpacked files) is removed once the run has been worked on.
    """
    model = current_model()
    run = claim(uuid.UUID(run_id), model)
    if run is None:
        return
    app = current_app._get_current_object()
    folder = run_folder(run.id)
    if not (folder / ARCHIVE).is_file():
        fail(run.id, MISSING_ARCHIVE)
        return
    try:
        with Tracker(app, run.id) as tracker:
            unpacked = folder / "unpacked"
            unpacked.mkdir()
            result = process_archive(
                folder / ARCHIVE,
                unpacked,
                archive_name=run.file_name,
                limits=unpack_limits(),
                model=model,
                threshold=run.threshold,
                progress=tracker.progress,
            )
            finished = finish(run.id, result)
        app.logger.info(
            "bulk run %s: %s, %d studies",
            run.id,
            "done" if finished else "stopped",
            len(result.rows),
        )
    except RunStopped:
        app.logger.info("bulk run %s: stopped (cancelled)", run.id)
    except ArchiveError as exc:  # unpack limits, disk space: the run's failure, with the message
        fail(run.id, exc.message)
    except Exception:
        app.logger.exception("bulk run %s failed", run.id)
        fail(run.id, INTERNAL_ERROR)
    finally:
        remove_folder(run.id)
