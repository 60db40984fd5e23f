"""The model interface, the deterministic stub, and loading a model from "pkg.module:Factory"."""

from __future__ import annotations

import functools
import hashlib
import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, Protocol

from medscan.analyzer.series import Series

__all__ = ["Model", "ModelLoadError", "Prediction", "StubModel", "load_model"]


@dataclass(frozen=True)
class Prediction:
    """A model's output: probability of pathology in [0, 1], optional finding name, extras.

    `extras` must be JSON-serialisable; it is copied into the analysis result.
    """

    probability: float
    finding: str | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        probability = self.probability
        if (
            not isinstance(probability, Real)
            or isinstance(probability, bool)
            or not (math.isfinite(probability) and 0 <= probability <= 1)
        ):
            raise ValueError(f"probability must be a finite number in [0, 1], got {probability!r}")
        object.__setattr__(self, "probability", float(probability))
        object.__setattr__(self, "extras", dict(self.extras))


class Model(Protocol):
    """What the analyzer needs from a model.

    `modalities` lists the Modality values the model accepts (None: any); a series of another
    modality fails without calling `predict`. `predict` gets the chosen series, whose instances
    all have complete pixel data, and may call ``series.volume()`` for the HU volume.
    """

    name: str
    version: str
    modalities: frozenset[str] | None

    def predict(self, series: Series) -> Prediction:
        """Return the probability of pathology for `series`."""
        ...


class StubModel:
    """A deterministic stand-in: the probability is a hash of the series' SOPInstanceUIDs."""

    name = "stub"
    version = "1"
    modalities: frozenset[str] | None = None

    def predict(self, series: Series) -> Prediction:
        """Map SHA-256 of the sorted SOPInstanceUIDs to [0, 1); never touches pixels."""
        uids = "\n".join(sorted(instance.sop_instance_uid for instance in series.instances))
        digest = hashlib.sha256(uids.encode()).digest()
        probability = int.from_bytes(digest[:8], "big") / 2**64
        return Prediction(probability, "nodule", {"note": "stub output"})


class ModelLoadError(RuntimeError):
    """A model spec that cannot be imported, called, or does not give a Model."""


def model_factory(spec: str | None) -> Callable[[], Model]:
    """Import the factory named by `spec` without calling it (None or "" gives `StubModel`).

    Raises
    ------
    ModelLoadError
        The spec is malformed, or the import fails.
    """
    if not spec:
        return StubModel
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ModelLoadError(f"model spec {spec!r} must look like 'package.module:Factory'")
    try:
        return functools.reduce(getattr, attribute.split("."), importlib.import_module(module_name))
    except (ImportError, AttributeError) as exc:
        raise ModelLoadError(f"cannot load model {spec!r}: {type(exc).__name__}: {exc}") from exc


@functools.cache
def load_model(spec: str | None) -> Model:
    """Return the model named by `spec`, once per process.

    None or "" gives `StubModel`; ``"package.module:Factory"`` imports the module and calls
    `Factory` (a class or a function, dotted attributes allowed) without arguments.

    Raises
    ------
    ModelLoadError
        The spec is malformed, the import or the call fails, or the object made lacks
        `name`, `version` or a callable `predict`.
    """
    factory = model_factory(spec)
    try:
        model = factory()
    except Exception as exc:
        raise ModelLoadError(f"model factory {spec!r} failed: {type(exc).__name__}: {exc}") from exc
    missing = [
        name for name in ("name", "version") if not isinstance(getattr(model, name, None), str)
    ]
    if not callable(getattr(model, "predict", None)):
        missing.append("predict()")
    if missing:
        raise ModelLoadError(f"model {spec!r} has no {', '.join(missing)}")
    return model
