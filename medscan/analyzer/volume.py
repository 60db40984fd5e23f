"""Building a series' volume: slice order, spacing, and pixels decoded into Hounsfield units.

Every image of a series is a `Slice` (an instance and one of its frames), so single-frame
classic CT and multi-frame Enhanced CT are ordered, measured and rescaled the same way.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from pydicom import dcmread
from pydicom.pixels import get_decoder, pixel_array
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from medscan.analyzer.headers import DicomReadError, Frame, Instance

__all__ = [
    "PixelDecodeError",
    "Slice",
    "hounsfield_image",
    "hounsfield_volume",
    "slice_order",
    "slice_spacing",
]

#: Gaps between slice positions that differ by no more than this (mm, or relative to the
#: median gap) count as one regular spacing.
SPACING_TOLERANCE_MM = 0.01
SPACING_TOLERANCE_RELATIVE = 0.01
DECODERS_HINT = "pip install 'medscan[decoders]'"


class PixelDecodeError(DicomReadError):
    """Pixel data that cannot be turned into an image (missing decoder, odd shape...)."""


@dataclass(frozen=True, slots=True)
class Slice:
    """One image of a series: an instance and one of its frames."""

    instance: Instance
    frame: Frame


def none_last(number: int | None) -> tuple[bool, int]:
    """Sort key putting None after every number."""
    return (number is None, number or 0)


def _uid_key(uid: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key comparing a UID's components as numbers (``1.2.10`` after ``1.2.9``)."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in uid.split("."))


def slice_order(instances: Sequence[Instance]) -> list[Slice]:
    """Return every frame of `instances` in slice order.

    When every frame has a position: ascending along the slice normal (the cross product of
    the first orientation's row and column directions, else the z axis). Otherwise, and for
    equal positions: InstanceNumber (None last), frame index, SOPInstanceUID compared by
    numeric components, then name.
    """
    slices = [Slice(instance, frame) for instance in instances for frame in instance.frames]
    normal = _normal(slices)

    def tie(s: Slice) -> tuple[object, ...]:
        instance = s.instance
        return (
            none_last(instance.instance_number),
            s.frame.index,
            _uid_key(instance.sop_instance_uid),
            instance.name,
        )

    if all(s.frame.position for s in slices):
        return sorted(slices, key=lambda s: (float(np.dot(normal, s.frame.position)), *tie(s)))  # type: ignore[arg-type]
    return sorted(slices, key=tie)


def _normal(slices: Sequence[Slice]) -> np.ndarray:
    """The slice normal: row × column direction of the first orientation, else the z axis."""
    orientation = next((s.frame.orientation for s in slices if s.frame.orientation), None)
    if orientation is None:
        return np.array([0.0, 0.0, 1.0])
    return np.cross(orientation[:3], orientation[3:])


def slice_spacing(slices: Sequence[Slice]) -> tuple[float, float, float] | None:
    """Return (slice, row, column) spacing in mm, or None where the geometry does not give it.

    The slice spacing is the distance between consecutive positions along the slice normal
    (`slices` in slice order), never SliceThickness; it is None for fewer than two slices,
    a slice without position, two slices at one position, or irregular gaps. Row and column
    spacing come from PixelSpacing of the first slice, and must be the same on every slice.
    """
    if len(slices) < 2 or not all(s.frame.position for s in slices):
        return None
    pixel_spacing = slices[0].frame.pixel_spacing
    if pixel_spacing is None or any(s.frame.pixel_spacing != pixel_spacing for s in slices):
        return None
    normal = _normal(slices)
    projections = np.array([np.dot(normal, s.frame.position) for s in slices])  # type: ignore[arg-type]
    gaps = np.diff(projections)
    median = float(np.median(gaps))
    tolerance = max(SPACING_TOLERANCE_MM, SPACING_TOLERANCE_RELATIVE * median)
    if median <= SPACING_TOLERANCE_MM or np.max(np.abs(gaps - median)) > tolerance:
        return None
    step = float(projections[-1] - projections[0]) / (len(slices) - 1)
    return (step, *pixel_spacing)  # type: ignore[return-value]


def hounsfield_volume(slices: Sequence[Slice]) -> np.ndarray:
    """Return `slices` in Hounsfield units, float32 of shape (images, rows, columns).

    Each instance is read and decoded once; each frame is scaled by its own RescaleSlope and
    RescaleIntercept (see `Frame`) and put at its place in slice order.

    Raises
    ------
    PixelDecodeError
        An instance cannot be decoded (e.g. JPEG 2000 without the optional decoders), is not
        grayscale, or its frames differ in size from the first slice's.
    """
    if not slices:
        raise ValueError("no slices")
    first = slices[0].instance
    shape = (first.rows or 0, first.columns or 0)
    volume = np.empty((len(slices), *shape), dtype=np.float32)
    places: dict[int, list[tuple[int, Slice]]] = {}
    for place, s in enumerate(slices):
        places.setdefault(id(s.instance), []).append((place, s))
    for members in places.values():
        pixels = _stored_frames(members[0][1].instance, shape)
        for place, s in members:
            _rescale(volume[place], pixels[s.frame.index], s.frame)
    return volume


def hounsfield_image(
    image: Slice, source: str | os.PathLike[str] | BinaryIO | None = None
) -> np.ndarray:
    """Return one image in Hounsfield units, float32 (rows, columns), decoding only its frame.

    The values are exactly those `hounsfield_volume` gives for this slice. `source` is where
    the instance's bytes are read (default: its path), e.g. a seekable ZIP entry stream. Only
    the image's own frame is decoded, except under the Deflated transfer syntax, where the
    whole instance is inflated (a deflate stream cannot be entered in the middle).

    Raises
    ------
    PixelDecodeError
        As `hounsfield_volume`.
    """
    instance = image.instance
    shape = (instance.rows or 0, instance.columns or 0)
    syntax = _decodable_syntax(instance)
    if syntax == DeflatedExplicitVRLittleEndian:
        stored = _stored_frames(instance, shape, source)[image.frame.index]
    else:
        try:
            stored = pixel_array(
                source or instance.file_path, index=image.frame.index, transfer_syntax_uid=syntax
            )
        except Exception as exc:  # decoders raise anything from RuntimeError to struct.error
            raise _decode_error(instance, exc) from exc
        if stored.shape != shape:
            raise PixelDecodeError(
                instance.name, f"frame of shape {stored.shape} does not fit {shape}"
            )
    hu = np.empty(shape, dtype=np.float32)
    _rescale(hu, stored, image.frame)
    return hu


def _rescale(out: np.ndarray, stored: np.ndarray, frame: Frame) -> None:
    """Write `stored` values into `out` as HU, with the frame's own slope and intercept."""
    out[...] = stored
    out *= np.float32(frame.slope)
    out += np.float32(frame.intercept)


def _decodable_syntax(instance: Instance) -> UID:
    """The instance's transfer syntax, once a decoder for it is known to be installed.

    Raises PixelDecodeError for an unknown syntax, a missing decoder or a colour image.
    """
    name = instance.name
    syntax = UID(instance.transfer_syntax_uid)
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as exc:
        raise PixelDecodeError(
            name, f"no pixel data decoder for transfer syntax {syntax.name} ({syntax})"
        ) from exc
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "a decoder plugin"
        raise PixelDecodeError(
            name,
            f"decoding {syntax.name} needs a decoder that is not installed ({missing}): "
            f"{DECODERS_HINT}",
        )
    if instance.samples_per_pixel != 1:
        raise PixelDecodeError(name, f"SamplesPerPixel {instance.samples_per_pixel}: not grayscale")
    return syntax


def _decode_error(instance: Instance, exc: Exception) -> PixelDecodeError:
    """The PixelDecodeError for a decoder's exception."""
    return PixelDecodeError(
        instance.name, f"cannot decode pixel data: {type(exc).__name__}: {exc}"
    )


def _stored_frames(
    instance: Instance,
    shape: Sequence[int],
    source: str | os.PathLike[str] | BinaryIO | None = None,
) -> np.ndarray:
    """Read and decode one instance (from `source`, default its path); return its stored values
    as (frames, rows, columns).
    """
    name = instance.name
    syntax = _decodable_syntax(instance)
    try:
        # force: the file already passed the header checks, which are stricter than pydicom.
        ds = dcmread(source or instance.file_path, force=True)
        if "TransferSyntaxUID" not in ds.file_meta:  # a raw dataset without file meta
            ds.file_meta.TransferSyntaxUID = syntax
        pixels = ds.pixel_array
    except Exception as exc:  # decoders raise anything from RuntimeError to struct.error
        raise _decode_error(instance, exc) from exc
    frames = pixels.reshape(-1, *pixels.shape[-2:]) if pixels.ndim >= 2 else pixels
    if frames.shape != (instance.number_of_frames, *shape):
        raise PixelDecodeError(
            name,
            f"pixel data of shape {pixels.shape} does not fit {instance.number_of_frames} "
            f"frame(s) of {tuple(shape)}",
        )
    return frames
