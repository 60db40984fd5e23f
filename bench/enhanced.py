"""Time per study: one N-frame Enhanced CT instance vs the same series as N classic files.

    python bench/enhanced.py [--images 300] [--size 512] [--rounds 3]

The classic series is written by tests/dicom_factory.py, the Enhanced CT by highdicom's
LegacyConvertedEnhancedCTImage from it. Each round analyses the study with a model that reads
``series.volume()`` and ``series.spacing`` (as a real model does), and prints the median wall
time of the header reading + grouping + volume + model call, and the volume's mean HU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from time import perf_counter

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medscan.analyzer import Prediction, Series, analyze_files  # noqa: E402
from tests.dicom_factory import write_ct_series  # noqa: E402
from tests.realdata.samples import write_legacy_enhanced  # noqa: E402


class VolumeModel:
    """Reads the volume and spacing; the probability is irrelevant here."""

    name = "bench"
    version = "1"
    modalities = None

    def predict(self, series: Series) -> Prediction:
        """Decode the volume, as a real model would."""
        volume = series.volume()
        return Prediction(0.5, extras={"mean_hu": float(volume.mean()), "shape": volume.shape})


def time_study(paths: list[Path], rounds: int) -> tuple[float, dict]:
    """Median seconds of `rounds` analyses of `paths`, and the last result's extras."""
    seconds = []
    for _ in range(rounds):
        started = perf_counter()
        analysis = analyze_files(paths, path_to_study="bench", model=VolumeModel(), threshold=0.5)
        seconds.append(perf_counter() - started)
        assert analysis.ok, analysis.error
    return statistics.median(seconds), analysis.result["extras"]


def main() -> None:
    """Write both forms of one series and time them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    def pixels(index: int, rows: int, columns: int) -> np.ndarray:
        return (np.arange(rows * columns, dtype=np.int16) % 1500 + index).reshape(rows, columns)

    with tempfile.TemporaryDirectory() as folder:
        files = write_ct_series(
            Path(folder) / "classic",
            n_slices=args.images,
            rows=args.size,
            columns=args.size,
            pixel_fn=pixels,
            shuffle=True,
        )
        enhanced = write_legacy_enhanced(files, Path(folder) / "enhanced.dcm")
        for label, paths in ((f"{args.images} files", files), ("1 Enhanced CT", [enhanced])):
            seconds, extras = time_study(paths, args.rounds)
            print(
                f"{label:>16}: {seconds:6.2f} s per study, volume {extras['shape']}, "
                f"mean {extras['mean_hu']:.1f} HU"
            )


if __name__ == "__main__":
    main()
