"""What a viewer is shown of a study: its series listed, one image windowed into a PNG.

Everything here works on the analyser's own objects (`Study`, `choose_series`, `Series.slices`,
`hounsfield_image`), so the listing says which series the analysis uses and the preview shows
an image exactly as the model gets it.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.tag import Tag

from medscan.analyzer.headers import NO_PIXEL_DATA, Instance
from medscan.analyzer.series import Series, Study, choose_series, weighed_part

__all__ = [
    "DEFAULT_WINDOW",
    "MAX_SIDE",
    "WINDOWS",
    "SeriesEntry",
    "Window",
    "png_image",
    "series_description",
    "series_entries",
    "windowed",
]

#: The longer side of a preview, in pixels, at most.
MAX_SIDE = 512
#: zlib level of the PNG: 1 encodes a noisy 512x512 CT slice 2-5x faster than the default 6
#: for a file about 15% larger (bench/README.md, previews).
PNG_COMPRESS_LEVEL = 1

# Why a series is not the analysed one (`SeriesEntry.reason`).
LOCALIZER = "localizer"
FEWER_IMAGES = "fewer images"
TIE_LOST = "as many images; the lower SeriesNumber (then SeriesInstanceUID) is chosen"
INCOMPLETE_PIXEL_DATA = "incomplete pixel data"
SERIES_DESCRIPTION = Tag("SeriesDescription")


@dataclass(frozen=True)
class Window:
    """A display window in Hounsfield units: the `width` of HU shown, centred on `level`."""

    name: str
    width: float
    level: float
    description: str


#: The window presets of the preview, by name.
WINDOWS: dict[str, Window] = {
    window.name: window
    for window in (
        Window("lung", 1500, -600, "lung parenchyma and airways"),
        Window("mediastinum", 350, 50, "soft tissue: heart, vessels, lymph nodes"),
        Window("bone", 2000, 500, "bone and calcifications"),
    )
}
DEFAULT_WINDOW = "lung"


@dataclass(frozen=True)
class SeriesEntry:
    """One series of a study as the listing shows it (see `series_entries`)."""

    series_uid: str
    series_number: int | None
    modality: str
    description: str | None
    images: int
    rows: int | None
    columns: int | None
    spacing: tuple[float, float, float] | None
    chosen: bool
    reason: str | None


def series_entries(study: Study, describe: Callable[[Instance], str | None]) -> list[SeriesEntry]:
    """List every series of `study` in its order, marking the one `choose_series` picks.

    ``images`` (frames counted), ``spacing``, ``rows`` and ``columns`` are those of the
    series' instances that the choice weighs: complete ones, localizers left aside unless the
    series holds nothing else. ``reason`` says why a series is not chosen: ``no pixel data``,
    ``incomplete pixel data``, ``localizer``, ``fewer images``, or a lost tie. `describe`
    gives an instance's SeriesDescription (it is read from one instance per series).
    """
    chosen = choose_series(study)
    entries = []
    for series in study.series:
        weighed = weighed_part(series, localizers=False) or weighed_part(series, localizers=True)
        is_chosen = chosen is not None and any(i is chosen.instances[0] for i in series.instances)
        if weighed is None:
            images = rows = columns = spacing = None
            has_pixels = any(instance.is_image for instance in series.instances)
            reason = INCOMPLETE_PIXEL_DATA if has_pixels else NO_PIXEL_DATA
        else:
            images, spacing = weighed.images, weighed.spacing
            rows, columns = weighed.instances[0].rows, weighed.instances[0].columns
            reason = None if is_chosen else _reason(weighed, chosen)
        entries.append(
            SeriesEntry(
                series_uid=series.series_uid,
                series_number=series.series_number,
                modality=series.modality,
                description=describe(series.instances[0]),
                images=images or 0,
                rows=rows,
                columns=columns,
                spacing=spacing,
                chosen=is_chosen,
                reason=reason,
            )
        )
    return entries


def _reason(weighed: Series, chosen: Series | None) -> str:
    """Why `weighed` (a candidate of `choose_series`) lost to `chosen`."""
    if chosen is None:  # never: a candidate exists, so one is chosen
        raise ValueError("a series with images but none chosen")
    if weighed.instances[0].is_localizer and not chosen.instances[0].is_localizer:
        return LOCALIZER
    return FEWER_IMAGES if weighed.images < chosen.images else TIE_LOST


def windowed(hu: np.ndarray, window: Window) -> np.ndarray:
    """Map HU to 8-bit gray with the DICOM linear VOI function (PS3.3 C.11.2.1.2.1).

    Values at or below ``level - width/2`` are black, above ``level + width/2`` white; the
    level itself is mid-gray (128).
    """
    centre, width = window.level - 0.5, window.width - 1
    gray = ((hu - centre) / width + 0.5) * 255
    return np.clip(np.rint(gray), 0, 255).astype(np.uint8)


def png_image(gray: np.ndarray, max_side: int = MAX_SIDE) -> bytes:
    """Encode an 8-bit grayscale image as PNG, shrunk to `max_side` on its longer side.

    The aspect ratio of the pixel grid is kept; smaller images keep their size.
    """
    picture = Image.fromarray(np.ascontiguousarray(gray, dtype=np.uint8))
    rows, columns = gray.shape
    scale = max_side / max(rows, columns)
    if scale < 1:
        size = (max(1, round(columns * scale)), max(1, round(rows * scale)))
        picture = picture.resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def series_description(source: str | os.PathLike[str] | BinaryIO) -> str | None:
    """An instance's SeriesDescription (None when absent or unreadable), pixels never read."""
    try:
        # force: the instance already passed the header checks, which are stricter.
        ds = dcmread(
            source, stop_before_pixels=True, specific_tags=[SERIES_DESCRIPTION], force=True
        )
        return str(ds.get("SeriesDescription") or "") or None
    except Exception:  # a description is a nicety: never the reason a listing fails
        return None
