"""Grouping instances into studies and series, leaving out duplicates, choosing the series.

One unit of input (a scan, or one unit of a bulk archive) goes through `group_studies`; the
analysed series of each study is `choose_series`. Instance names (entry names in a ZIP) decide
folders and path order, never the paths files were unpacked to.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field
from operator import attrgetter

import numpy as np

from medscan.analyzer.headers import Instance
from medscan.analyzer.volume import Slice, hounsfield_volume, none_last, slice_order, slice_spacing

__all__ = ["LeftOut", "Series", "Study", "choose_series", "group_studies"]


@dataclass(frozen=True)
class LeftOut:
    """An instance left out of its study (a duplicate, or incomplete pixel data), and why."""

    path: str
    reason: str


@dataclass
class Series:
    """The instances of one series, in slice order (see `slice_order`).

    This is what a model's ``predict`` gets: `instances`, `volume()`, `spacing`, `images`.
    """

    series_uid: str
    series_number: int | None
    modality: str
    instances: list[Instance]
    _images: int = field(init=False, repr=False, compare=False)
    _slices: list[Slice] | None = field(default=None, init=False, repr=False, compare=False)
    _volume: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ordered = slice_order(self.instances)  # not kept: most series are never looked into
        self._images = len(ordered)
        by_id = {id(s.instance): s.instance for s in ordered}
        frameless = [instance for instance in self.instances if not instance.frames]
        self.instances = [*by_id.values(), *frameless]

    @property
    def complete_instances(self) -> list[Instance]:
        """Return the instances whose pixel data is complete."""
        return [instance for instance in self.instances if instance.pixel_problem is None]

    @property
    def images(self) -> int:
        """The number of images (frames: a 300-frame instance counts 300)."""
        return self._images

    @property
    def slices(self) -> list[Slice]:
        """Every image in slice order: an instance and one of its frames (see `volume`)."""
        if self._slices is None:
            self._slices = slice_order(self.instances)
        return self._slices

    @property
    def spacing(self) -> tuple[float, float, float] | None:
        """(slice, row, column) in mm, or None where the geometry does not give it."""
        return slice_spacing(self.slices)

    def volume(self) -> np.ndarray:
        """Return the images in Hounsfield units, float32 of shape (images, rows, columns).

        Images are in slice order (ascending along the slice normal), frames of multi-frame
        instances included, each rescaled by its own slope and intercept. Computed on the
        first call and cached.

        Raises
        ------
        PixelDecodeError
            An image cannot be decoded (e.g. JPEG 2000 without the optional decoders), is not
            grayscale, or differs in size from the first image.
        """
        if self._volume is None:
            if not self.slices:
                raise ValueError(f"series {self.series_uid} has no images")
            self._volume = hounsfield_volume(self.slices)
        return self._volume


@dataclass(frozen=True)
class Study:
    """The series of one study, ordered by SeriesNumber (None last) then SeriesInstanceUID.

    `duplicates` are the further copies of instances of this study, left out.
    """

    study_uid: str
    series: list[Series]
    duplicates: list[LeftOut] = field(default_factory=list)

    @property
    def instances(self) -> list[Instance]:
        """Return every instance of the study (duplicates not included)."""
        return [instance for series in self.series for instance in series.instances]

    @property
    def left_out(self) -> list[LeftOut]:
        """Duplicates and image instances with incomplete pixel data, sorted by path."""
        incomplete = [
            LeftOut(instance.name, instance.pixel_problem)
            for instance in self.instances
            if instance.pixel_problem is not None and instance.is_image
        ]
        return sorted([*self.duplicates, *incomplete], key=lambda item: item.path)


def _folder(instance: Instance) -> str:
    """The folder of an instance's name ("" at the root)."""
    return posixpath.dirname(instance.name)


def group_studies(instances: Iterable[Instance]) -> list[Study]:
    """Group the instances of one unit into studies, then series.

    Instances are taken in name order. A SOPInstanceUID seen before is a duplicate: the first
    copy with complete pixel data (else the first copy) is kept, the others are left out as
    ``duplicate of <name>``. Instances without StudyInstanceUID form one study per folder
    (study_uid ""), and those without SeriesInstanceUID one series per folder within their
    study. Studies come sorted by (UID, folder), series by (SeriesNumber, None last;
    SeriesInstanceUID; folder), instances in slice order.
    """
    studies, duplicates = _kept_copies(instances)
    result = []
    for study_key in sorted(studies):
        members = studies.pop(study_key)  # its lists are freed as the series are made
        series = [
            Series(uid, group[0].series_number, group[0].modality, group)
            for (uid, _), group in sorted(
                members.items(),
                key=lambda item: (none_last(item[1][0].series_number), item[0]),
            )
        ]
        result.append(Study(study_key[0], series, duplicates[study_key]))
    return result


_Members = dict[tuple[str, str], dict[tuple[str, str], list[Instance]]]


def _kept_copies(
    instances: Iterable[Instance],
) -> tuple[_Members, dict[tuple[str, str], list[LeftOut]]]:
    """The kept instances by study and series key, and the copies left out by study key.

    A function of its own so that its lookups are freed before the series are made.
    """
    first: dict[str, Instance] = {}  # by SOPInstanceUID
    copies: dict[str, list[Instance]] = {}  # every copy, for the UIDs seen more than once
    in_order = sorted(instances, key=attrgetter("file_path"))
    in_order.sort(key=attrgetter("name"))  # stable: by name, then path, without a key tuple each
    for instance in in_order:
        seen = first.setdefault(instance.sop_instance_uid, instance)
        if seen is not instance:
            copies.setdefault(instance.sop_instance_uid, [seen]).append(instance)
    studies: _Members = {}
    duplicates: dict[tuple[str, str], list[LeftOut]] = {}
    for uid, instance in first.items():
        same = copies.get(uid, (instance,))
        kept = next((i for i in same if i.pixel_problem is None), instance)
        study_key = (kept.study_uid, "" if kept.study_uid else _folder(kept))
        series_key = (kept.series_uid, "" if kept.series_uid else _folder(kept))
        studies.setdefault(study_key, {}).setdefault(series_key, []).append(kept)
        duplicates.setdefault(study_key, []).extend(
            LeftOut(copy.name, f"duplicate of {kept.name}") for copy in same if copy is not kept
        )
    return studies, duplicates


def weighed_part(series: Series, *, localizers: bool) -> Series | None:
    """The part of `series` that `choose_series` weighs: its complete instances that are
    localizers (or are not); None if there are none."""
    members = [i for i in series.complete_instances if i.is_localizer == localizers]
    if not members:
        return None
    return Series(series.series_uid, series.series_number, series.modality, members)


def choose_series(study: Study) -> Series | None:
    """Return the series to analyse, holding only its instances with complete pixel data.

    Localizers (ImageType LOCALIZER) are left aside unless the study has nothing else. Among
    series with at least one complete instance: the most images (frames); ties go to the
    lowest SeriesNumber (None last), then the lowest SeriesInstanceUID. None if no series has
    any complete instance.
    """

    def candidates(localizers: bool) -> list[Series]:
        return [part for s in study.series if (part := weighed_part(s, localizers=localizers))]

    found = candidates(localizers=False) or candidates(localizers=True)
    if not found:
        return None
    return min(found, key=lambda s: (-s.images, none_last(s.series_number), s.series_uid))
