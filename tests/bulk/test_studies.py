"""Bulk studies: rows per study and unit, paths, skipped files, Failure rows, progress."""

from __future__ import annotations

import itertools
import zipfile
from pathlib import Path

import pytest

from medscan.analyzer import Model, StubModel
from medscan.bulk.studies import BulkResult, process_archive
from medscan.safezip import NotAZip, UnpackLimitExceeded, UnpackLimits
from tests.analyzer.sample_models import RaisingModel
from tests.dicom_factory import write_ct_series
from tests.zip_factory import (
    MIB,
    data_offset,
    flip_byte,
    patch_entry,
    write_symlink_zip,
    write_zeros_zip,
    write_zip,
)

ARCHIVE_NAME = "batch.zip"
HYPERLINK = '=HYPERLINK("http://x","y").dcm'
NOT_DICOM = "not DICOM"
TEXT = b"this is not an image\n"
_dirs = itertools.count()


@pytest.fixture(autouse=True)
def _contained(tmp_path: Path):
    """After each test, nothing exists under tmp_path outside tmp_path/in and the work folders."""
    yield
    for path in tmp_path.rglob("*"):
        top = path.relative_to(tmp_path).parts[0]
        assert top == "in" or top.startswith("work"), f"{path} written outside the work folder"


def uids(name: str) -> tuple[str, str]:
    """Study and first-series UIDs for a study named by one letter."""
    number = ord(name)
    return f"1.2.826.0.1.{number}", f"1.2.826.0.1.{number}.1"


def slices(tmp_path: Path, study: str, n: int, *, series: int = 1) -> list[bytes]:
    """The bytes of `n` CT slices of series `series` of study `study` (see `uids`)."""
    study_uid, _ = uids(study)
    paths = write_ct_series(
        tmp_path / "in" / "src" / str(next(_dirs)),
        n_slices=n,
        study_uid=study_uid,
        series_uid=f"{study_uid}.{series}",
        series_number=series,
    )
    return [path.read_bytes() for path in paths]


def zip_bytes(tmp_path: Path, entries: list[tuple[str, bytes]]) -> bytes:
    """A ZIP holding `entries`, as bytes."""
    return write_zip(tmp_path / "in" / "src" / f"{next(_dirs)}.zip", entries).read_bytes()


def folder_of(tmp_path: Path, name: str = "work") -> Path:
    """A fresh empty work folder."""
    path = tmp_path / name
    path.mkdir()
    return path


def run(
    zip_path: Path,
    folder: Path,
    model: Model | None = None,
    progress: list[tuple[int, int]] | None = None,
) -> BulkResult:
    """process_archive with the stub model, threshold 0.5 and the default limits."""
    return process_archive(
        zip_path,
        folder,
        archive_name=ARCHIVE_NAME,
        limits=UnpackLimits(),
        model=model or StubModel(),
        threshold=0.5,
        progress=None if progress is None else lambda done, total: progress.append((done, total)),
    )


def table(result: BulkResult) -> list[tuple[str, str, str, str]]:
    """(path_to_study, study_uid, series_uid, processing_status) of every row."""
    return [(*r.report.cells()[:3], r.report.processing_status) for r in result.rows]


def errors(result: BulkResult) -> dict[str, str | None]:
    """path_to_study -> error of every row."""
    return {row.report.path_to_study: row.error for row in result.rows}


def skipped(result: BulkResult) -> list[tuple[str, str]]:
    """(path, reason) of every skipped file."""
    return [(item.path, item.reason) for item in result.skipped]


@pytest.fixture
def batch(tmp_path: Path) -> Path:
    """An archive with every kind of content a bulk run meets (see the expected rows below)."""
    entries: list[tuple[str, bytes]] = []

    def add(folder: str, contents: list[bytes], stem: str = "") -> None:
        for number, content in enumerate(contents, start=1):
            entries.append((f"{folder}{stem}{number}.dcm", content))

    a_slices = slices(tmp_path, "A", 5)
    add("p1/study/series/", a_slices[:4])
    entries.append(("p1/study/series/crc.dcm", a_slices[4]))
    entries.append(("p2/a.dcm", slices(tmp_path, "B", 1)[0]))
    entries.append(("root.dcm", slices(tmp_path, "C", 1)[0]))
    add("", slices(tmp_path, "D", 3), "r")
    add("shared/", slices(tmp_path, "E", 2), "e")
    add("shared/", slices(tmp_path, "F", 2), "f")
    add("p3/s1/", slices(tmp_path, "G", 3))
    add("p3/s2/", slices(tmp_path, "G", 2, series=2))
    norma = [(f"1/{n}.dcm", data) for n, data in enumerate(slices(tmp_path, "H", 2))]
    norma += [(f"2/{n}.dcm", data) for n, data in enumerate(slices(tmp_path, "H", 5, series=2))]
    entries.append(("batch1/norma_anon.zip", zip_bytes(tmp_path, norma)))
    x_zip = [("scan/1.dcm", slices(tmp_path, "I", 1)[0]), ("notes.txt", TEXT)]
    entries.append(("batch1/x.zip", zip_bytes(tmp_path, x_zip)))
    inner = zip_bytes(tmp_path, [("a.dcm", slices(tmp_path, "Z", 1)[0])])
    deep = [("1.dcm", slices(tmp_path, "J", 1)[0]), ("more/inner.zip", inner)]
    entries.append(("nest/deep.zip", zip_bytes(tmp_path, deep)))
    entries += [("__MACOSX/._a.dcm", TEXT), (".DS_Store", TEXT), ("DICOMDIR", TEXT)]
    entries += [("p1/Thumbs.db", TEXT), ("notes.txt", TEXT), ("report.pdf", b"%PDF-1.4\n%%EOF")]
    entries += [("fake/1.dcm", TEXT), ("fake/2.dcm", TEXT), ("bad/x.dcm", TEXT)]
    entries.append(("broken.zip", b"PK\x03\x04" + b"junk" * 20))
    entries.append(("texts.zip", zip_bytes(tmp_path, [("readme.txt", TEXT), ("d/a.txt", TEXT)])))
    entries.append(("locked/scan.dcm", slices(tmp_path, "Y", 1)[0]))
    entries.append((HYPERLINK, slices(tmp_path, "K", 1)[0]))
    entries.append(("Иванов/ct.dcm", slices(tmp_path, "L", 1)[0]))

    path = write_zip(tmp_path / "in" / ARCHIVE_NAME, entries, zipfile.ZIP_STORED)
    flip_byte(path, data_offset(path, "p1/study/series/crc.dcm") + 300)
    return patch_entry(path, "locked/scan.dcm", flag_bits=0x1)


def row(path: str, study: str, series: int = 1) -> tuple[str, str, str, str]:
    """An expected Success row of series `series` of study `study`."""
    study_uid, _ = uids(study)
    return path, study_uid, f"{study_uid}.{series}", "Success"


def failure(path: str) -> tuple[str, str, str, str]:
    """An expected Failure row without UIDs."""
    return path, "", "", "Failure"


EXPECTED_ROWS = sorted(
    [
        row("p1/study/series", "A"),
        row("p2/a.dcm", "B"),
        row("root.dcm", "C"),
        row(ARCHIVE_NAME, "D"),
        row("shared", "E"),
        row("shared", "F"),
        row("p3", "G"),
        row("batch1/norma_anon.zip", "H", series=2),
        row("batch1/x.zip", "I"),
        row("nest/deep.zip", "J"),
        row(HYPERLINK, "K"),  # named exactly as in the archive, "//" included
        row("Иванов/ct.dcm", "L"),
        failure("fake"),
        failure("bad/x.dcm"),
        failure("broken.zip"),
        failure("texts.zip"),
        failure("locked/scan.dcm"),
    ]
)
EXPECTED_SKIPPED = [
    ("batch1/x.zip/notes.txt", NOT_DICOM),
    ("nest/deep.zip/more/inner.zip", "nested ZIP inside a nested ZIP is not opened"),
    ("notes.txt", NOT_DICOM),
    ("p1/study/series/crc.dcm", "cannot extract: CRC error"),
    ("report.pdf", NOT_DICOM),
]


def test_rows_and_skipped_files(tmp_path: Path, batch: Path) -> None:
    calls: list[tuple[int, int]] = []
    result = run(batch, folder_of(tmp_path), progress=calls)

    assert table(result) == EXPECTED_ROWS
    assert skipped(result) == EXPECTED_SKIPPED
    studies = sum(1 for row in result.rows if row.report.study_uid)
    assert calls == [(done, studies) for done in range(studies + 1)]  # (0, total) once unpacked
    for item in result.rows:
        report = item.report
        if report.processing_status == "Success":
            assert 0 <= report.probability_of_pathology <= 1
            assert report.pathology == int(report.probability_of_pathology >= 0.5)
            assert item.error is None
        else:
            assert report.probability_of_pathology is None and report.pathology is None
            assert item.error
        assert report.time_of_processing >= 0


def test_failure_reasons(tmp_path: Path, batch: Path) -> None:
    reasons = errors(run(batch, folder_of(tmp_path)))

    assert reasons["bad/x.dcm"].startswith("unreadable DICOM: not DICOM")
    assert reasons["fake"].startswith("2 unreadable files, first 1.dcm: unreadable DICOM: ")
    assert reasons["broken.zip"] == "corrupted nested ZIP"
    assert reasons["texts.zip"] == "no readable DICOM in nested ZIP"
    assert reasons["locked/scan.dcm"] == "cannot extract: encrypted"


def test_deterministic(tmp_path: Path, batch: Path) -> None:
    first = run(batch, folder_of(tmp_path, "work1"))
    second = run(batch, folder_of(tmp_path, "work2"))

    def stable(result: BulkResult) -> list[tuple]:
        return [(*r.report.cells()[:-1], r.error) for r in result.rows]

    assert stable(first) == stable(second)
    assert first.skipped == second.skipped


def test_model_failure_keeps_uids(tmp_path: Path) -> None:
    entries = [(f"s/{n}.dcm", data) for n, data in enumerate(slices(tmp_path, "A", 2))]
    path = write_zip(tmp_path / "in" / ARCHIVE_NAME, entries)

    result = run(path, folder_of(tmp_path), model=RaisingModel())

    assert table(result) == [("s", *uids("A"), "Failure")]
    assert result.rows[0].error == "MemoryError: CUDA out of memory"
    assert result.rows[0].report.probability_of_pathology is None
    assert result.rows[0].report.pathology is None


def test_unreadable_files_beside_a_study_in_a_nested_zip(tmp_path: Path) -> None:
    nested = [(f"s/{n}.dcm", data) for n, data in enumerate(slices(tmp_path, "A", 2))]
    nested += [("bad.dcm", TEXT), ("s/bad2.dcm", TEXT)]
    symlinked = tmp_path / "in" / "src" / "links.zip"
    write_symlink_zip(symlinked, "link.dcm", "/etc/passwd", {"readme.txt": TEXT})
    entries = [("n.zip", zip_bytes(tmp_path, nested)), ("links.zip", symlinked.read_bytes())]
    entries += [("a.dcm", TEXT), ("magic", bytes(128) + b"DICM" + TEXT)]
    entries += [(f"sub/{n}.dcm", data) for n, data in enumerate(slices(tmp_path, "B", 2))]
    path = write_zip(tmp_path / "in" / ARCHIVE_NAME, entries)

    result = run(path, folder_of(tmp_path))

    assert table(result) == [
        failure(ARCHIVE_NAME),
        failure("links.zip"),
        row("n.zip", "A"),
        failure("n.zip/bad.dcm"),
        row("sub", "B"),
    ]
    reasons = errors(result)
    assert reasons[ARCHIVE_NAME].startswith("2 unreadable files, first a.dcm: unreadable DICOM")
    assert reasons["links.zip"] == "no readable DICOM in nested ZIP"
    assert [(p, r.split(":")[0]) for p, r in skipped(result)] == [
        ("n.zip/s/bad2.dcm", "unreadable DICOM")
    ]


def test_symlinks_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "in" / ARCHIVE_NAME
    write_symlink_zip(path, "link.dcm", "/etc/passwd", {"a/1.dcm": slices(tmp_path, "A", 1)[0]})

    result = run(path, folder_of(tmp_path))

    assert table(result) == [row("a/1.dcm", "A")]
    assert skipped(result) == [("link.dcm", "symlink")]


def test_no_dicom_at_all(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "in" / ARCHIVE_NAME, [("notes.txt", TEXT)])

    result = run(path, folder_of(tmp_path))

    assert result.rows == []
    assert skipped(result) == [("notes.txt", NOT_DICOM)]


def test_ratio_bomb_propagates(tmp_path: Path) -> None:
    path = write_zeros_zip(tmp_path / "in" / ARCHIVE_NAME, "big.dcm", 101 * MIB)
    folder = folder_of(tmp_path)

    with pytest.raises(UnpackLimitExceeded):
        run(path, folder)
    assert list(folder.iterdir()) == []


def test_not_a_zip_propagates(tmp_path: Path) -> None:
    path = tmp_path / "in" / ARCHIVE_NAME
    path.parent.mkdir()
    path.write_bytes(TEXT)

    with pytest.raises(NotAZip):
        run(path, folder_of(tmp_path))
