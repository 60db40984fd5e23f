"""A model the tests hold at a gate, in their own process or in a worker process.

Each prediction leaves a marker file in ``$GATED_MODEL_DIR``; once more than the number in its
file ``free`` (0 without it) have started, each waits until the file ``go`` exists there. Files,
not memory, so that a test sees and steers what a worker process does.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from medscan.analyzer import Prediction, Series

GO = "go"
FREE = "free"
MARKER = "predict-"


def folder() -> Path:
    """The gate's folder."""
    return Path(os.environ["GATED_MODEL_DIR"])


def predictions_started() -> int:
    """How many predictions have started, in every process."""
    return len(list(folder().glob(f"{MARKER}*")))


def let_through(count: int) -> None:
    """The first ``count`` predictions pass, later ones wait for ``open_gate``."""
    (folder() / FREE).write_text(str(count))


def reset() -> None:
    """No prediction started, the gate closed."""
    for entry in folder().iterdir():
        entry.unlink()


def open_gate() -> None:
    """Let every waiting and later prediction through."""
    (folder() / GO).touch()


class GatedModel:
    """Probability 0.7 for every study, once the gate lets the prediction through."""

    name = "gated"
    version = "1"
    modalities = None

    def predict(self, series: Series) -> Prediction:
        """Wait at the gate (see the module), then predict."""
        (folder() / f"{MARKER}{os.getpid()}-{uuid.uuid4().hex}").touch()
        free = folder() / FREE
        if predictions_started() > (int(free.read_text()) if free.exists() else 0):
            while not (folder() / GO).exists():
                time.sleep(0.02)
        return Prediction(0.7, "nodule", {})
