"""Synthetic CT DICOM written with pydicom, for tests and benchmarks."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)

PixelFn = Callable[[int, int, int], np.ndarray]


def default_pixels(index: int, rows: int, columns: int) -> np.ndarray:
    """Return slice `index`: a gradient offset by 100 × index, so every pixel is known."""
    return (np.arange(rows * columns, dtype=np.int16) + 100 * index).reshape(rows, columns)


def ct_dataset(
    *,
    index: int = 0,
    rows: int = 16,
    columns: int = 16,
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_instance_uid: str | None = None,
    series_number: int | None = 1,
    instance_number: int | None = None,
    patient_id: str = "P1",
    modality: str = "CT",
    slope: float = 1,
    intercept: float = -1024,
    pixels: np.ndarray | None = None,
    frame_of_reference_uid: str | None = None,
) -> Dataset:
    """Return slice `index` of an axial CT series (z = 2.5 × index), with file meta."""
    sop_instance_uid = sop_instance_uid or generate_uid()
    pixels = default_pixels(index, rows, columns) if pixels is None else pixels
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = sop_instance_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_instance_uid
    ds.StudyDate = "20250920"
    ds.Modality = modality
    ds.PatientName = "Test^Patient"
    ds.PatientID = patient_id
    ds.SliceThickness = "2.5"
    ds.KVP = "120"
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.StudyID = "1"
    if series_number is not None:
        ds.SeriesNumber = series_number
    ds.InstanceNumber = index + 1 if instance_number is None else instance_number
    ds.ImagePositionPatient = [-100.0, -100.0, 2.5 * index]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.FrameOfReferenceUID = frame_of_reference_uid or generate_uid()
    ds.SliceLocation = 2.5 * index
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelSpacing = [0.7, 0.7]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = intercept
    ds.RescaleSlope = slope
    ds.RescaleType = "HU"
    ds.PixelData = pixels.astype("<i2").tobytes()
    return ds


def write_dataset(path: str | Path, ds: Dataset, *, preamble: bool = True) -> Path:
    """Write `ds` as Part 10 explicit VR little endian, or (preamble=False) as a raw dataset
    without preamble or file meta."""
    path = Path(path)
    if preamble:
        dcmwrite(path, ds, enforce_file_format=True)
    else:
        raw = Dataset()
        raw.update(ds)
        dcmwrite(path, raw, implicit_vr=False, little_endian=True)
    return path


def write_ct_file(path: str | Path, *, preamble: bool = True, **dataset_kwargs: object) -> Path:
    """Write one CT slice (see `ct_dataset` for the keyword arguments)."""
    return write_dataset(path, ct_dataset(**dataset_kwargs), preamble=preamble)  # type: ignore[arg-type]


def write_ct_series(
    directory: str | Path,
    *,
    n_slices: int,
    rows: int = 16,
    columns: int = 16,
    study_uid: str | None = None,
    series_uid: str | None = None,
    series_number: int | None = 1,
    patient_id: str = "P1",
    modality: str = "CT",
    slope: float = 1,
    intercept: float = -1024,
    pixel_fn: PixelFn | None = None,
    preamble: bool = True,
    shuffle: bool = False,
) -> list[Path]:
    """Write a CT series into `directory`; return its files in slice order.

    Files are named ``<series_number>_<NNNN>.dcm``; with `shuffle` the numbers in the names
    are a fixed permutation of the slice order, so the directory listing is not slice order.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    frame_of_reference_uid = generate_uid()
    names = list(range(n_slices))
    if shuffle:
        random.Random(n_slices).shuffle(names)
    pixel_fn = pixel_fn or default_pixels
    return [
        write_ct_file(
            directory / f"{series_number}_{names[index]:04d}.dcm",
            preamble=preamble,
            index=index,
            study_uid=study_uid,
            series_uid=series_uid,
            series_number=series_number,
            patient_id=patient_id,
            modality=modality,
            slope=slope,
            intercept=intercept,
            pixels=pixel_fn(index, rows, columns),
            frame_of_reference_uid=frame_of_reference_uid,
        )
        for index in range(n_slices)
    ]
