"""A model that runs an exported ONNX network on the HU volume, configured by a TOML file.

``MEDSCAN_MODEL=medscan.analyzer.onnx_model:OnnxModel`` with ``MEDSCAN_ONNX_SETTINGS`` naming the
settings file (see README "Plugging in a model"). Needs ``pip install 'medscan[onnx]'``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from medscan.analyzer.model import ModelLoadError, Prediction
from medscan.analyzer.series import Series

SETTINGS_VARIABLE = "MEDSCAN_ONNX_SETTINGS"
OUTPUTS = ("probability", "sigmoid", "softmax")


def resample(
    volume: np.ndarray,
    spacing: tuple[float, float, float] | None,
    shape: tuple[int, int, int],
    target_mm: tuple[float, float, float] | None,
) -> np.ndarray:
    """Linear zoom to `shape`; with both spacings, zoom to `target_mm` then centre pad/crop.

    Padding is 0 (the window's low end after scaling).
    """
    from scipy import ndimage

    if target_mm is None or spacing is None:
        factors = [want / have for want, have in zip(shape, volume.shape, strict=True)]
        return ndimage.zoom(volume, factors, order=1, mode="nearest", grid_mode=True)
    factors = [have / want for have, want in zip(spacing, target_mm, strict=True)]
    zoomed = ndimage.zoom(volume, factors, order=1, mode="nearest", grid_mode=True)
    out = np.zeros(shape, dtype=np.float32)
    source, target = [], []
    for have, want in zip(zoomed.shape, shape, strict=True):
        start = abs(have - want) // 2
        size = min(have, want)
        source.append(slice(start, start + size) if have > want else slice(0, size))
        target.append(slice(start, start + size) if want > have else slice(0, size))
    out[tuple(target)] = zoomed[tuple(source)]
    return out


class OnnxModel:
    """An ONNX network: window and scale the HU volume, resample, run, read one probability."""

    modalities: frozenset[str] | None = frozenset({"CT"})

    def __init__(self) -> None:
        settings_path = os.environ.get(SETTINGS_VARIABLE)
        if not settings_path:
            raise ModelLoadError(f"{SETTINGS_VARIABLE} must name the ONNX model's settings file")
        try:
            settings = tomllib.loads(Path(settings_path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ModelLoadError(f"ONNX settings {settings_path}: {exc}") from exc
        self.settings = self._checked(settings, settings_path)
        self.name = str(settings.get("name", "onnx"))
        self.version = str(settings.get("version", "1"))
        try:
            import onnxruntime
        except ImportError as exc:
            raise ModelLoadError("the ONNX model needs pip install 'medscan[onnx]'") from exc
        model_path = Path(settings_path).parent / settings["model"]
        options = onnxruntime.SessionOptions()
        default_threads = max(1, (os.cpu_count() or 2) // 2)
        options.intra_op_num_threads = int(settings.get("threads", default_threads))
        try:
            self.session = onnxruntime.InferenceSession(
                str(model_path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise ModelLoadError(f"ONNX model {model_path}: {exc}") from exc
        graph_input = self.session.get_inputs()[0]
        expected = [1, 1, *self.settings["shape"]]
        if len(graph_input.shape) != 5 or any(
            isinstance(have, int) and have != want
            for have, want in zip(graph_input.shape, expected, strict=True)
        ):
            raise ModelLoadError(
                f"ONNX model {model_path}: input {graph_input.name} has shape "
                f"{graph_input.shape}, the settings give NCDHW {expected}"
            )
        self.input_name = graph_input.name

    @staticmethod
    def _checked(settings: dict[str, Any], path: str) -> dict[str, Any]:
        """Settings with their required keys, or ModelLoadError naming the file."""
        problems = [key for key in ("model", "shape", "window") if key not in settings]
        if len(settings.get("shape", ())) != 3 or len(settings.get("window", ())) != 2:
            problems.append("shape = [D, H, W] and window = [lo, hi]")
        if settings.get("output", "probability") not in OUTPUTS:
            problems.append(f"output one of {', '.join(OUTPUTS)}")
        if problems:
            raise ModelLoadError(f"ONNX settings {path} need {'; '.join(problems)}")
        return settings

    def preprocess(self, series: Series) -> np.ndarray:
        """The network's input: HU clipped to the window, scaled to [0, 1], resampled, NCDHW."""
        low, high = self.settings["window"]
        volume = (np.clip(series.volume(), low, high) - low) / (high - low)
        shape, target_mm = self.settings["shape"], self.settings.get("spacing_mm")
        volume = resample(volume.astype(np.float32), series.spacing, shape, target_mm)
        return volume.astype(np.float32)[np.newaxis, np.newaxis]

    def predict(self, series: Series) -> Prediction:
        """Run the network; the probability per the ``output`` setting."""
        outputs = self.session.run(None, {self.input_name: self.preprocess(series)})
        values = np.asarray(outputs[int(self.settings.get("output_index", 0))], np.float64).ravel()
        kind = self.settings.get("output", "probability")
        if kind == "softmax":
            exp = np.exp(values - values.max())
            probability = exp[int(self.settings.get("class_index", 1))] / exp.sum()
        else:
            value = values[0]
            probability = 1 / (1 + np.exp(-value)) if kind == "sigmoid" else value
        return Prediction(float(probability), self.settings.get("finding"), {})
