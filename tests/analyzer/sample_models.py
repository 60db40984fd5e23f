"""Tiny models loaded by spec in the analyzer tests."""

from __future__ import annotations

from medscan.analyzer import Prediction, Series


class ConstantModel:
    """Always the same probability; accepts CT only."""

    name = "constant"
    version = "2.0"
    modalities: frozenset[str] | None = frozenset({"CT"})

    def __init__(self, probability: float = 0.8, finding: str | None = "emphysema") -> None:
        self.probability = probability
        self.finding = finding

    def predict(self, series: Series) -> Prediction:
        """Return the configured probability."""
        return Prediction(self.probability, self.finding, {"slices": len(series.instances)})


def make_low_model() -> ConstantModel:
    """A function factory."""
    return ConstantModel(0.1)


def broken_factory() -> ConstantModel:
    """A factory that fails."""
    raise RuntimeError("weights not found")


class NotAModel:
    """Has a name but nothing else."""

    name = "not a model"


def make_half_model() -> ConstantModel:
    """Probability exactly 0.5, on the default threshold."""
    return ConstantModel(0.5)


class RaisingModel(ConstantModel):
    """A model whose prediction fails."""

    name = "raising"

    def predict(self, series: Series) -> Prediction:
        """Fail like a real model that ran out of memory."""
        raise MemoryError("CUDA out of memory")
