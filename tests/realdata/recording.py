"""A test model that records what ``predict`` got, the way a real model reads a series."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from medscan.analyzer import Prediction, Series


@dataclass(frozen=True)
class Received:
    """What one ``predict`` call was given."""

    series_uid: str
    volume: np.ndarray
    spacing: tuple[float, float, float] | None
    instance_names: list[str]


class RecordingModel:
    """Reads ``series.volume()`` and ``series.spacing``; keeps them in `received`."""

    name = "recording"
    version = "1"
    modalities: frozenset[str] | None = None
    received: ClassVar[list[Received]] = []

    def predict(self, series: Series) -> Prediction:
        """Record the series and return a probability from its mean HU (deterministic)."""
        volume = series.volume()
        names = [instance.name for instance in series.instances]
        self.received.append(Received(series.series_uid, volume, series.spacing, names))
        probability = float(1 / (1 + np.exp(-volume.mean() / 500)))
        return Prediction(probability, "density", {"mean_hu": float(volume.mean())})
