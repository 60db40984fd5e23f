"""Real-world DICOM for the tests: a classic CT series re-encoded by dcmtk and GDCM, Enhanced CT
made by highdicom, and pydicom-data's vendor files.

Our own writer (tests/dicom_factory.py) only makes the classic series and its localizers; every
other file here is written by a tool other than ours.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.uid import generate_uid

from tests.dicom_factory import ct_dataset, write_ct_series, write_dataset
from tests.tools import require_tool

#: The classic series: slices, size, slice gap (mm), pixel spacing (mm), rescale intercept.
SLICES, ROWS, COLUMNS = 12, 24, 20
SLICE_GAP, PIXEL_SPACING, INTERCEPT = 2.5, 0.7, -1024
STUDY_UID = "1.2.826.0.1.3680043.10.511.1"
SERIES_UID = STUDY_UID + ".1"


def classic_pixels(index: int, rows: int, columns: int) -> np.ndarray:
    """Stored values of slice `index`: a gradient plus 37 × index (0..~1500, HU -1024..~500)."""
    return (np.arange(rows * columns, dtype=np.int16) * 3 + 37 * index).reshape(rows, columns)


def classic_hu() -> np.ndarray:
    """The HU volume the classic series must give, in slice order."""
    return np.stack([classic_pixels(k, ROWS, COLUMNS) + INTERCEPT for k in range(SLICES)]).astype(
        np.float32
    )


def write_classic_series(folder: Path) -> list[Path]:
    """Write the classic series (shuffled file names) into `folder`; files in slice order."""
    return write_ct_series(
        folder,
        n_slices=SLICES,
        rows=ROWS,
        columns=COLUMNS,
        study_uid=STUDY_UID,
        series_uid=SERIES_UID,
        series_number=2,
        intercept=INTERCEPT,
        pixel_fn=classic_pixels,
        shuffle=True,
    )


def localizer_series(folder: Path, n: int) -> list[Path]:
    """Write ``n`` localizer images of the classic study, a series of their own, into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(n):
        ds = ct_dataset(
            index=index, study_uid=STUDY_UID, series_uid=STUDY_UID + ".9", series_number=1
        )
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        paths.append(write_dataset(folder / f"loc{index}.dcm", ds))
    return paths


@dataclass(frozen=True)
class Encoding:
    """A re-encoding of a file by an external tool."""

    name: str
    command: tuple[str, ...]  # the tool and its options; input and output paths are appended
    transfer_syntax_uid: str
    lossless: bool


ENCODINGS = [
    Encoding("deflated (dcmconv +td)", ("dcmconv", "+td"), "1.2.840.10008.1.2.1.99", True),
    Encoding("RLE (dcmcrle)", ("dcmcrle",), "1.2.840.10008.1.2.5", True),
    Encoding(
        "JPEG lossless SV1 (dcmcjpeg +e1)", ("dcmcjpeg", "+e1"), "1.2.840.10008.1.2.4.70", True
    ),
    Encoding("JPEG lossless (dcmcjpeg +el)", ("dcmcjpeg", "+el"), "1.2.840.10008.1.2.4.57", True),
    Encoding("JPEG baseline (dcmcjpeg +eb)", ("dcmcjpeg", "+eb"), "1.2.840.10008.1.2.4.50", False),
    Encoding("JPEG extended (dcmcjpeg +ee)", ("dcmcjpeg", "+ee"), "1.2.840.10008.1.2.4.51", False),
    Encoding("JPEG-LS lossless (dcmcjpls)", ("dcmcjpls",), "1.2.840.10008.1.2.4.80", True),
    Encoding(
        "JPEG-LS near-lossless (gdcmconv -L --lossy -e 2)",
        ("gdcmconv", "-L", "--lossy", "-e", "2"),
        "1.2.840.10008.1.2.4.81",
        False,
    ),
    Encoding(
        "JPEG 2000 lossless (gdcmconv --j2k)", ("gdcmconv", "--j2k"), "1.2.840.10008.1.2.4.90", True
    ),
    Encoding(
        "JPEG 2000 (gdcmconv --j2k --lossy)",
        ("gdcmconv", "--j2k", "--lossy", "-q", "80"),
        "1.2.840.10008.1.2.4.91",
        False,
    ),
]


def reencode(files: list[Path], encoding: Encoding, folder: Path) -> list[Path]:
    """Re-encode every file with `encoding`'s tool into `folder`; same names, same order."""
    tool = require_tool(encoding.command[0])
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for path in files:
        target = folder / path.name
        subprocess.run(
            [tool, *encoding.command[1:], str(path), str(target)], check=True, capture_output=True
        )
        assert dcmread(target, stop_before_pixels=True).file_meta.TransferSyntaxUID == (
            encoding.transfer_syntax_uid
        )
        written.append(target)
    return written


def write_legacy_enhanced(files: list[Path], target: Path, **options: object) -> Path:
    """Convert a classic series into one highdicom Legacy Converted Enhanced CT instance."""
    from highdicom.legacy import LegacyConvertedEnhancedCTImage

    datasets = [dcmread(path) for path in files]
    enhanced = LegacyConvertedEnhancedCTImage(
        legacy_datasets=datasets,
        series_instance_uid=options.get("series_uid", generate_uid()),
        series_number=options.get("series_number", 3),
        sop_instance_uid=generate_uid(),
        instance_number=1,
    )
    enhanced.save_as(target)
    return target
