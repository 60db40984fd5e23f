"""Safe unzip: hostile archives, limits, nested ZIPs, names, work directories, ZIP scans."""

from __future__ import annotations

import os
import stat
import time
import zipfile
from pathlib import Path
from typing import BinaryIO

import pytest

from medscan.safezip import (
    ArchiveError,
    CorruptedZip,
    EmptyZip,
    Extraction,
    NotAZip,
    NotEnoughDiskSpace,
    Skipped,
    UnpackLimitExceeded,
    UnpackLimits,
    extract_archive,
    inspect_zip,
    is_litter,
    safe_relpath,
)
from medscan.safezip.entries import is_unsafe_name
from tests.zip_factory import (
    MIB,
    data_offset,
    flip_byte,
    patch_entry,
    truncate,
    write_symlink_zip,
    write_zeros_zip,
    write_zip,
)

LIMITS = UnpackLimits()
DICOM = bytes(128) + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00" + bytes(4)


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    """The extraction directory; archives live in tmp_path/in."""
    path = tmp_path / "dest"
    path.mkdir()
    return path


@pytest.fixture(autouse=True)
def _contained(tmp_path: Path):
    """After each test, nothing exists under tmp_path outside tmp_path/in and tmp_path/dest."""
    yield
    for path in tmp_path.rglob("*"):
        relative = path.relative_to(tmp_path)
        assert relative.parts[0] in ("in", "dest"), f"{relative} written outside dest"


def files_of(extraction: Extraction, unit_path: str = "") -> dict[str, bytes]:
    """Path -> content of one unit's files."""
    unit = next(unit for unit in extraction.units if unit.path == unit_path)
    return {file.path: file.disk_path.read_bytes() for file in unit.files}


def assert_refused(
    error: type[ArchiveError], zip_path: Path, dest: Path, limits: UnpackLimits = LIMITS
) -> ArchiveError:
    """Extraction raises ``error`` and leaves ``dest`` empty."""
    with pytest.raises(error) as caught:
        extract_archive(zip_path, dest, limits)
    assert list(dest.iterdir()) == []
    return caught.value


def is_dicom(stream: BinaryIO) -> bool:
    """The DICOM sniffer inspect_zip is given: a Part 10 preamble."""
    return stream.read(132)[128:] == b"DICM"


# Names


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a/b.dcm", "a/b.dcm"),
        ("a\\b.dcm", "a/b.dcm"),
        ("/etc/x", "etc/x"),
        ("C:\\x", "x"),
        ("c:/dir/./x", "dir/x"),
        ("//server/share/x", "server/share/x"),
        ("../evil", None),
        ("..\\..\\x", None),
        ("a/../../x", None),
        ("a/../b", None),
        ("./", None),
        ("C:", None),
    ],
)
def test_safe_relpath(name: str, expected: str | None) -> None:
    assert safe_relpath(name) == expected


@pytest.mark.parametrize(
    ("name", "unsafe"),
    [
        ("a/b.dcm", False),
        ("a\\b.dcm", False),
        ("a//./b", False),
        ("..a/b..", False),
        ("/etc/x", True),
        ("\\x", True),
        ("C:x", True),
        ("a/../b", True),
        ("a\\..\\b", True),
        ("", True),
        (".", True),
    ],
)
def test_is_unsafe_name(name: str, unsafe: bool) -> None:
    assert is_unsafe_name(name) is unsafe


@pytest.mark.parametrize(
    ("relpath", "litter"),
    [
        ("__MACOSX/._a.dcm", True),
        ("study/__macosx/x", True),
        (".DS_Store", True),
        ("a/THUMBS.DB", True),
        ("Desktop.ini", True),
        ("cd/DICOMDIR", True),
        ("a/b.dcm", False),
        ("__MACOSX", False),
        ("dicomdir.txt", False),
    ],
)
def test_is_litter(relpath: str, litter: bool) -> None:
    assert is_litter(relpath) is litter


# Entry names that try to escape


def test_slip_entries_are_refused(tmp_path: Path, dest: Path) -> None:
    names = ["../evil.txt", "/etc/x", "\\y", "C:\\x", "..\\..\\y", "a/../../z", "ok/file.txt"]
    zip_path = write_zip(tmp_path / "in/slip.zip", {name: name.encode() for name in names})
    result = extract_archive(zip_path, dest, LIMITS)
    assert files_of(result) == {"ok/file.txt": b"ok/file.txt"}
    unsafe = sorted(name for name in names if name != "ok/file.txt")
    assert result.skipped == [Skipped(name, "unsafe path") for name in unsafe]
    assert not (tmp_path / "evil.txt").exists()
    assert [path.read_bytes() for path in dest.rglob("*") if path.is_file()] == [b"ok/file.txt"]


def test_symlink_entry_is_never_created(tmp_path: Path, dest: Path) -> None:
    zip_path = write_symlink_zip(
        tmp_path / "in/link.zip", "passwd", "../../../../etc/passwd", {"a.txt": b"a"}
    )
    result = extract_archive(zip_path, dest, LIMITS)
    assert result.skipped == [Skipped("passwd", "symlink")]
    assert files_of(result) == {"a.txt": b"a"}
    assert not any(path.is_symlink() for path in dest.rglob("*"))


def test_names_alike_only_after_normalising_are_all_kept_as_named(
    tmp_path: Path, dest: Path
) -> None:
    names = ["a\\b.dcm", "a/b.dcm", "a//b.dcm", "a/./b.dcm", "A/B.dcm", "a/b.DCM", "x", "x/y"]
    entries = {name: name.encode() for name in names} | {"x/": b"", "a/": b""}
    result = extract_archive(write_zip(tmp_path / "in/alike.zip", entries), dest, LIMITS)
    assert files_of(result) == {name: name.encode() for name in names}
    assert result.skipped == []


def test_a_repeated_name_is_skipped_and_the_first_entry_used(tmp_path: Path, dest: Path) -> None:
    inner = write_zip(tmp_path / "in/inner.zip", [("s/1.dcm", b"first"), ("s/1.dcm", b"again")])
    entries = [
        ("a.dcm", b"first a"),
        ("b/c.txt", b"first c"),
        ("a.dcm", b"second a"),
        ("n.zip", inner.read_bytes()),
        ("a.dcm", b"third a"),
        ("b/c.txt", b"second c"),
        ("__MACOSX/._a.dcm", b"x"),
        ("__MACOSX/._a.dcm", b"x"),
    ]
    result = extract_archive(write_zip(tmp_path / "in/dup.zip", entries), dest, LIMITS)
    assert files_of(result) == {"a.dcm": b"first a", "b/c.txt": b"first c"}
    assert files_of(result, "n.zip") == {"s/1.dcm": b"first"}
    assert result.skipped == [
        Skipped("a.dcm", "duplicate entry name"),
        Skipped("a.dcm", "duplicate entry name"),
        Skipped("b/c.txt", "duplicate entry name"),
        Skipped("n.zip/s/1.dcm", "duplicate entry name"),
    ]
    assert result.litter == 2
    assert inspect_zip(write_zip(tmp_path / "in/scan.zip", entries[:3]), LIMITS, is_dicom) is False


def test_repeated_names_cost_linear_time(tmp_path: Path, dest: Path) -> None:
    """The issue's archive: every entry named a.dcm. 8x the entries must not take 64x the time."""

    def best_time(count: int) -> float:
        zip_path = tmp_path / f"in/a{count}.zip"
        write_zip(zip_path, [("a.dcm", b"x")] * count)
        times = []
        for attempt in range(2):
            target = dest / f"{count}-{attempt}"
            target.mkdir()
            started = time.perf_counter()
            result = extract_archive(zip_path, target, LIMITS)
            inspect_zip(zip_path, LIMITS, is_dicom)
            times.append(time.perf_counter() - started)
        assert len(result.skipped) == count - 1
        return min(times)

    small, large = best_time(1000), best_time(8000)
    assert large < 24 * small, f"1000 repeats: {small:.3f} s, 8000: {large:.3f} s"


# Limits


def test_ratio_bomb_is_413(tmp_path: Path, dest: Path) -> None:
    zip_path = write_zeros_zip(tmp_path / "in/bomb.zip", "zeros.bin", 101 * MIB, {"a.txt": b"a"})
    error = assert_refused(UnpackLimitExceeded, zip_path, dest)
    assert error.message == "ZIP entry compression ratio over 200:1"


def test_small_entry_at_600_to_1_is_fine(tmp_path: Path, dest: Path) -> None:
    zip_path = write_zeros_zip(tmp_path / "in/blank.zip", "blank.dcm", 20 * MIB)
    info = zipfile.ZipFile(zip_path).getinfo("blank.dcm")
    assert info.file_size / info.compress_size > 600
    result = extract_archive(zip_path, dest, LIMITS)
    assert result.units[0].files[0].disk_path.stat().st_size == 20 * MIB


def test_total_over_limit_is_413_and_leaves_nothing(tmp_path: Path, dest: Path) -> None:
    entries = {f"s/{n}.dcm": os.urandom(MIB) for n in range(3)}
    zip_path = write_zip(tmp_path / "in/big.zip", entries, zipfile.ZIP_STORED)
    error = assert_refused(UnpackLimitExceeded, zip_path, dest, UnpackLimits(max_unzipped_mb=2))
    assert error.message == "Unpacked ZIP too large. Max 2 MB"


def test_declared_size_over_limit_fails_before_inflating(tmp_path: Path, dest: Path) -> None:
    zip_path = patch_entry(
        write_zip(tmp_path / "in/liar.zip", {"a": b"tiny"}), "a", file_size=3 * MIB
    )
    error = assert_refused(UnpackLimitExceeded, zip_path, dest, UnpackLimits(max_unzipped_mb=2))
    assert error.message == "Unpacked ZIP too large. Max 2 MB"


def test_understated_size_inflates_no_more_than_declared(tmp_path: Path, dest: Path) -> None:
    """A size bomb whose headers claim 1 KB: CPython stops at 1 KB and the CRC check fails."""
    zip_path = write_zeros_zip(tmp_path / "in/liar.zip", "bomb.bin", 3 * MIB, {"ok.txt": b"ok"})
    patch_entry(zip_path, "bomb.bin", file_size=1024)
    result = extract_archive(zip_path, dest, UnpackLimits(max_unzipped_mb=2))
    assert result.units[0].entry_failures == [Skipped("bomb.bin", "CRC error")]
    assert files_of(result) == {"ok.txt": b"ok"}


def test_too_many_entries_is_413(tmp_path: Path, dest: Path) -> None:
    zip_path = write_zip(tmp_path / "in/many.zip", {f"{n}.txt": b"x" for n in range(60)})
    error = assert_refused(UnpackLimitExceeded, zip_path, dest, UnpackLimits(max_entries=50))
    assert error.message == "Too many ZIP entries. Max 50"


def test_nested_entries_count_and_extracted_files_are_removed(tmp_path: Path, dest: Path) -> None:
    inner = write_zip(tmp_path / "in/inner.zip", {f"{n}.txt": b"x" for n in range(30)})
    outer = {f"loose/{n}.txt": b"y" for n in range(29)} | {"inner.zip": inner.read_bytes()}
    zip_path = write_zip(tmp_path / "in/outer.zip", outer)
    assert_refused(UnpackLimitExceeded, zip_path, dest, UnpackLimits(max_entries=50))
    result = extract_archive(zip_path, dest, UnpackLimits(max_entries=60))
    assert [unit.path for unit in result.units] == ["", "inner.zip"]


def test_bomb_in_nested_zip_removes_what_was_extracted(tmp_path: Path, dest: Path) -> None:
    bomb = write_zeros_zip(tmp_path / "in/bomb.zip", "zeros.bin", 101 * MIB)
    entries = {"a/1.dcm": DICOM, "a/2.dcm": DICOM, "batch/bomb.zip": bomb.read_bytes()}
    zip_path = write_zip(tmp_path / "in/outer.zip", entries, zipfile.ZIP_STORED)
    error = assert_refused(UnpackLimitExceeded, zip_path, dest)
    assert error.message == "ZIP entry compression ratio over 200:1"


def test_not_enough_disk_space_is_503(tmp_path: Path, dest: Path) -> None:
    zip_path = write_zip(tmp_path / "in/a.zip", {"a.dcm": DICOM})
    error = assert_refused(NotEnoughDiskSpace, zip_path, dest, UnpackLimits(reserve_mb=2**40))
    assert error.message == "Not enough disk space"


# Archives refused whole


def test_truncated_archive_is_corrupted(tmp_path: Path, dest: Path) -> None:
    zip_path = write_zip(tmp_path / "in/cut.zip", {"a.dcm": os.urandom(4096), "b.dcm": DICOM})
    truncate(zip_path, zip_path.stat().st_size // 2)
    error = assert_refused(CorruptedZip, zip_path, dest)
    assert error.message == "Corrupted ZIP"


@pytest.mark.parametrize("shape", ["data runs into the next entry", "two entries share a header"])
def test_overlapping_entries_are_corrupted(tmp_path: Path, dest: Path, shape: str) -> None:
    zip_path = write_zip(tmp_path / "in/overlap.zip", {"a": b"a" * 100, "b": b"b" * 100})
    with zipfile.ZipFile(zip_path) as archive:
        first = archive.getinfo("a")
    if shape == "two entries share a header":
        patch_entry(zip_path, "b", header_offset=first.header_offset)
    else:
        patch_entry(zip_path, "a", compress_size=first.compress_size + 10)
    assert_refused(CorruptedZip, zip_path, dest)


@pytest.mark.parametrize(
    "content",
    [b"", b"hello, not a zip", b"\x89PNG\r\n\x1a\n" + bytes(64), b"MZ" + bytes(62) + b"PK\x03\x04"],
)
def test_not_a_zip(tmp_path: Path, dest: Path, content: bytes) -> None:
    zip_path = tmp_path / "in/x.zip"
    zip_path.parent.mkdir()
    zip_path.write_bytes(content)
    error = assert_refused(NotAZip, zip_path, dest)
    assert error.message == "Only .zip is accepted"


@pytest.mark.parametrize(
    "entries",
    [
        {},
        {"dir/": b""},
        {"__MACOSX/._a": b"x", ".DS_Store": b"x", "Thumbs.db": b"", "DICOMDIR": b""},
    ],
)
def test_empty_or_litter_only_zip(tmp_path: Path, dest: Path, entries: dict[str, bytes]) -> None:
    error = assert_refused(EmptyZip, write_zip(tmp_path / "in/empty.zip", entries), dest)
    assert error.message == "Empty ZIP"


def test_litter_is_skipped_silently(tmp_path: Path, dest: Path) -> None:
    entries = {"a.dcm": DICOM, "__MACOSX/._a.dcm": b"x", "sub/desktop.ini": b"x", "DICOMDIR": b"x"}
    result = extract_archive(write_zip(tmp_path / "in/litter.zip", entries), dest, LIMITS)
    assert (files_of(result), result.skipped, result.litter) == ({"a.dcm": DICOM}, [], 3)


# Faulty entries: failures, never exceptions


def test_encrypted_entry_is_an_entry_failure(tmp_path: Path, dest: Path) -> None:
    zip_path = write_zip(tmp_path / "in/enc.zip", {"secret.dcm": DICOM, "open.dcm": DICOM})
    patch_entry(zip_path, "secret.dcm", flag_bits=0x1)
    result = extract_archive(zip_path, dest, LIMITS)
    assert result.units[0].entry_failures == [Skipped("secret.dcm", "encrypted")]
    assert files_of(result) == {"open.dcm": DICOM}


def test_crc_error_is_an_entry_failure(tmp_path: Path, dest: Path) -> None:
    entries = {"bad.dcm": DICOM, "good.dcm": DICOM}
    zip_path = write_zip(tmp_path / "in/crc.zip", entries, zipfile.ZIP_STORED)
    flip_byte(zip_path, data_offset(zip_path, "bad.dcm") + 5)
    result = extract_archive(zip_path, dest, LIMITS)
    assert result.units[0].entry_failures == [Skipped("bad.dcm", "CRC error")]
    assert files_of(result) == {"good.dcm": DICOM}
    assert [path.read_bytes() for path in dest.rglob("*") if path.is_file()] == [DICOM]


def test_truncated_entry_data_is_an_entry_failure(tmp_path: Path, dest: Path) -> None:
    """zipfile reads only the declared compressed size, so a cut entry fails its CRC."""
    zip_path = write_zip(tmp_path / "in/short.zip", {"cut.bin": os.urandom(MIB), "ok.txt": b"ok"})
    patch_entry(zip_path, "cut.bin", compress_size=1000)
    result = extract_archive(zip_path, dest, LIMITS)
    assert result.units[0].entry_failures == [Skipped("cut.bin", "CRC error")]
    assert files_of(result) == {"ok.txt": b"ok"}


@pytest.mark.parametrize(("method", "name"), [(9, "Deflate64"), (12, "bzip2"), (14, "LZMA")])
def test_unsupported_method_is_an_entry_failure(
    tmp_path: Path, dest: Path, method: int, name: str
) -> None:
    zip_path = write_zip(tmp_path / "in/m.zip", {"odd.dcm": DICOM, "ok.dcm": DICOM})
    patch_entry(zip_path, "odd.dcm", compress_type=method)
    result = extract_archive(zip_path, dest, LIMITS)
    reason = f"unsupported compression method {method} ({name})"
    assert result.units[0].entry_failures == [Skipped("odd.dcm", reason)]
    assert files_of(result) == {"ok.dcm": DICOM}


def test_names_too_long_for_the_disk_are_kept(tmp_path: Path, dest: Path) -> None:
    entries = {"a" * 300 + "/b.dcm": b"1", "c" * 5000: b"2", "ok.dcm": DICOM}
    result = extract_archive(write_zip(tmp_path / "in/long.zip", entries), dest, LIMITS)
    assert files_of(result) == entries
    assert result.units[0].entry_failures == []


# Name encodings


def test_names_are_decoded_cp866_utf8_or_cp437(tmp_path: Path, dest: Path) -> None:
    raw = {
        "cp866": "Иванов И.И/КТ №1.dcm".encode("cp866"),
        "mac": "Петров/снимок.dcm".encode(),  # UTF-8 without the flag, as macOS writes it
        "cp437": b"temp \xf8C \xe6m.txt",  # cp437 "°C µm"; cp866 would not be all Cyrillic
    }
    entries = {name: name.encode() for name in ["Сидоров/флаг.dcm"]}  # zipfile sets the UTF-8 flag
    entries |= {"x" * len(value): key.encode() for key, value in raw.items()}
    zip_path = write_zip(tmp_path / "in/names.zip", entries)
    for value in raw.values():
        patch_entry(zip_path, "x" * len(value), raw_name=value)
    assert files_of(extract_archive(zip_path, dest, LIMITS)) == {
        "Иванов И.И/КТ №1.dcm": b"cp866",
        "Петров/снимок.dcm": b"mac",
        "temp °C µm.txt": b"cp437",
        "Сидоров/флаг.dcm": "Сидоров/флаг.dcm".encode(),
    }


def test_a_name_flagged_utf8_that_is_not_is_decoded_alone(tmp_path: Path, dest: Path) -> None:
    entries = {"Сидоров/a.dcm": DICOM, "bad-name.dcm": DICOM, "x/" + "-" * 3: b"x"}
    zip_path = write_zip(tmp_path / "in/flag.zip", entries)
    patch_entry(zip_path, "bad-name.dcm", raw_name=b"bad\xffname.dcm", flag_bits=0x800)
    patch_entry(zip_path, "x/---", raw_name=b"x/\xd0\x9f\xc0", flag_bits=0x800)  # cut, overlong
    assert files_of(extract_archive(zip_path, dest, LIMITS)) == {
        "Сидоров/a.dcm": DICOM,
        "bad\ufffdname.dcm": DICOM,
        "x/П\ufffd": b"x",
    }
    assert inspect_zip(zip_path, LIMITS, is_dicom)


def test_threads_share_a_misflagged_archive(tmp_path: Path, dest: Path) -> None:
    entries = {f"s/{n:03d}-.dcm": os.urandom(n * 50) for n in range(200)}
    zip_path = write_zip(tmp_path / "in/many.zip", entries)
    for n in range(0, 200, 3):
        raw = f"s/{n:03d}\xff.dcm".encode("latin-1")
        patch_entry(zip_path, f"s/{n:03d}-.dcm", raw_name=raw, flag_bits=0x800)
    expected = {
        (f"s/{n:03d}\ufffd.dcm" if n % 3 == 0 else f"s/{n:03d}-.dcm"): content
        for n, content in enumerate(entries.values())
    }
    assert files_of(extract_archive(zip_path, dest, LIMITS, workers=4)) == expected


def test_a_local_name_flagged_utf8_that_is_not_is_an_entry_failure(
    tmp_path: Path, dest: Path
) -> None:
    zip_path = write_zip(tmp_path / "in/local.zip", {"bad.dcm": DICOM, "ok.dcm": DICOM})
    offset = data_offset(zip_path, "bad.dcm") - len("bad.dcm") - 30
    data = bytearray(zip_path.read_bytes())
    data[offset + 6 : offset + 8] = (0x800).to_bytes(2, "little")
    data[offset + 30] = 0xFF
    zip_path.write_bytes(bytes(data))
    result = extract_archive(zip_path, dest, LIMITS)
    reason = "corrupted entry: local header name is not UTF-8"
    assert result.units[0].entry_failures == [Skipped("bad.dcm", reason)]
    assert files_of(result) == {"ok.dcm": DICOM}


# Folder entries


def test_an_entry_with_data_is_a_file_whatever_its_mode(tmp_path: Path, dest: Path) -> None:
    folder_mode = (stat.S_IFDIR | 0o755) << 16
    entries = {
        "unix-dir-bit": DICOM,  # data and a folder mode: a file
        "dos-dir-bit": b"dos",  # data and the MS-DOS folder attribute: a file
        "empty-unix-dir": b"",  # no data and a folder mode: a folder
        "empty/": b"",
        "with-data/": b"lost?",
        "windows\\": b"lost?",
    }
    zip_path = write_zip(tmp_path / "in/modes.zip", entries)
    for name, attributes in [
        ("unix-dir-bit", folder_mode | 0x10),
        ("dos-dir-bit", 0x10),
        ("empty-unix-dir", folder_mode),
    ]:
        patch_entry(zip_path, name, external_attr=attributes)
    result = extract_archive(zip_path, dest, LIMITS)
    assert files_of(result) == {"unix-dir-bit": DICOM, "dos-dir-bit": b"dos"}
    assert result.skipped == [
        Skipped("windows\\", "folder entry with data"),
        Skipped("with-data/", "folder entry with data"),
    ]
    assert inspect_zip(zip_path, LIMITS, is_dicom)


def test_only_folder_entries_with_data_is_not_empty(tmp_path: Path, dest: Path) -> None:
    zip_path = write_zip(tmp_path / "in/folders.zip", {"a/": DICOM, "b/": b""})
    result = extract_archive(zip_path, dest, LIMITS)
    assert (result.units, result.skipped) == ([], [Skipped("a/", "folder entry with data")])
    assert not inspect_zip(zip_path, LIMITS, is_dicom)


# Nested ZIPs


def test_nested_zip_is_opened_one_level(tmp_path: Path, dest: Path) -> None:
    deepest = write_zip(tmp_path / "in/deepest.zip", {"d.dcm": DICOM})
    nested = write_zip(
        tmp_path / "in/norma.zip",
        {"s1/a.dcm": DICOM, "deeper.zip": deepest.read_bytes(), "../up.dcm": DICOM},
    )
    unnamed = write_zip(tmp_path / "in/unnamed.zip", {"u.dcm": DICOM})
    entries = {
        "batch1/norma_anon.zip": nested.read_bytes(),
        "batch1/study": unnamed.read_bytes(),  # no extension: known by its signature
        "report.docx": deepest.read_bytes(),  # a ZIP by signature, but a document
        "loose/x.dcm": DICOM,
    }
    zip_path = write_zip(tmp_path / "in/outer.zip", entries)
    result = extract_archive(zip_path, dest, LIMITS, workers=2)
    assert [unit.path for unit in result.units] == ["", "batch1/norma_anon.zip", "batch1/study"]
    assert set(files_of(result)) == {"loose/x.dcm", "report.docx"}
    assert files_of(result, "batch1/norma_anon.zip") == {
        "s1/a.dcm": DICOM,
        "deeper.zip": deepest.read_bytes(),
    }
    assert files_of(result, "batch1/study") == {"u.dcm": DICOM}
    assert result.skipped == [Skipped("batch1/norma_anon.zip/../up.dcm", "unsafe path")]
    assert not (result.units[0].root / "batch1/norma_anon.zip").exists()
    (dest / "flat").mkdir()
    flat = extract_archive(zip_path, dest / "flat", LIMITS, nested=False)
    assert set(files_of(flat)) == set(entries)


def test_broken_nested_zips_are_unit_failures(tmp_path: Path, dest: Path) -> None:
    good = write_zip(tmp_path / "in/good.zip", {"a.dcm": DICOM, "b.dcm": DICOM})
    corrupt = tmp_path / "in/corrupt.zip"
    corrupt.write_bytes(good.read_bytes()[:-30])
    locked = write_zip(tmp_path / "in/locked.zip", {"a.dcm": DICOM})
    patch_entry(locked, "a.dcm", flag_bits=0x1)
    entries = {
        "corrupt.zip": corrupt.read_bytes(),
        "locked.zip": locked.read_bytes(),
        "text.ZIP": b"not a zip at all",
        "empty.zip": write_zip(tmp_path / "in/e.zip", {".DS_Store": b""}).read_bytes(),
        "crc.zip": good.read_bytes(),
        "ok.dcm": DICOM,
    }
    zip_path = write_zip(tmp_path / "in/outer.zip", entries, zipfile.ZIP_STORED)
    flip_byte(zip_path, data_offset(zip_path, "crc.zip") + 40)
    result = extract_archive(zip_path, dest, LIMITS)
    assert {unit.path: unit.failure for unit in result.units} == {
        "": None,
        "corrupt.zip": "corrupted nested ZIP",
        "crc.zip": "CRC error",
        "empty.zip": "empty ZIP",
        "locked.zip": "encrypted",
        "text.ZIP": "not a ZIP file",
    }
    assert files_of(result) == {"ok.dcm": DICOM}
    assert not list((dest / "archive").glob("*.zip")) + list((dest / "archive").glob("*.ZIP"))


def test_one_and_two_workers_give_the_same_result(tmp_path: Path) -> None:
    entries = {f"s{n % 3}/{n}.dcm": os.urandom(n * 1000) for n in range(40)}
    zip_path = write_zip(tmp_path / "in/many.zip", entries)
    results = []
    for workers in (1, 2, 4):
        target = tmp_path / f"dest/{workers}"
        target.mkdir(parents=True)
        result = extract_archive(zip_path, target, LIMITS, workers=workers)
        assert files_of(result) == entries
        results.append([file.path for file in result.units[0].files])
    assert results[0] == results[1] == results[2] == sorted(entries)


# ZIP scans


def test_inspect_zip_finds_an_accepted_entry(tmp_path: Path) -> None:
    entries = {"notes.txt": b"hello", "__MACOSX/._a.dcm": DICOM, "series/a.dcm": DICOM}
    assert inspect_zip(write_zip(tmp_path / "in/scan.zip", entries), LIMITS, is_dicom)


def test_inspect_zip_skips_litter_and_faulty_entries(tmp_path: Path) -> None:
    entries = {"notes.txt": b"hello", "__MACOSX/._a.dcm": DICOM, "series/a.dcm": DICOM}
    zip_path = write_zip(tmp_path / "in/scan.zip", entries, zipfile.ZIP_STORED)
    flip_byte(zip_path, data_offset(zip_path, "series/a.dcm") + 140)
    assert not inspect_zip(zip_path, LIMITS, is_dicom)


def test_inspect_zip_text_only_is_false(tmp_path: Path) -> None:
    zip_path = write_zip(tmp_path / "in/text.zip", {"a.txt": b"a", "b/c.txt": b"c"})
    assert not inspect_zip(zip_path, LIMITS, is_dicom)


def test_inspect_zip_bomb_is_413_even_without_dicom(tmp_path: Path) -> None:
    zip_path = write_zeros_zip(tmp_path / "in/bomb.zip", "zeros.bin", 101 * MIB, {"a.dcm": DICOM})
    with pytest.raises(UnpackLimitExceeded, match="ratio over 200:1"):
        inspect_zip(zip_path, LIMITS, is_dicom)


def test_inspect_zip_total_limit_counts_every_entry(tmp_path: Path) -> None:
    entries = {"a.dcm": DICOM, "pad1.bin": os.urandom(MIB), "pad2.bin": os.urandom(MIB)}
    zip_path = write_zip(tmp_path / "in/big.zip", entries, zipfile.ZIP_STORED)
    with pytest.raises(UnpackLimitExceeded, match="Unpacked ZIP too large. Max 1 MB"):
        inspect_zip(zip_path, UnpackLimits(max_unzipped_mb=1), is_dicom)


def test_inspect_zip_open_errors(tmp_path: Path) -> None:
    text = tmp_path / "in/t.zip"
    text.parent.mkdir()
    text.write_bytes(b"plain text")
    with pytest.raises(NotAZip):
        inspect_zip(text, LIMITS, is_dicom)
    cut = write_zip(tmp_path / "in/cut.zip", {"a.dcm": DICOM})
    with pytest.raises(CorruptedZip):
        inspect_zip(truncate(cut, 40), LIMITS, is_dicom)
