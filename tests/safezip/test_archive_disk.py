"""A disk that fills up while an archive is unpacked: NotEnoughDiskSpace and nothing left behind.

Each test mounts a small tmpfs of its own (and unmounts it); without permission to mount they
skip, unless MEDSCAN_REQUIRE_TOOLS=1.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from medscan.safezip import ExtractedFile, NotEnoughDiskSpace, UnpackLimits, extract_archive
from medscan.workspace import work_dir
from tests.zip_factory import write_zip

#: No reserve, so that the check before unpacking passes and the disk itself runs out.
NO_RESERVE = UnpackLimits(reserve_mb=0)


def archive_of(tmp_path: Path, shape: str, count: int, size: int) -> tuple[Path, bool]:
    """An archive of ``count`` random files of ``size`` bytes, loose or in a nested ZIP; and
    whether it is unpacked as a bulk archive (nested ZIPs opened) or as a ZIP scan."""
    files = [(f"series/{number}.dcm", os.urandom(size)) for number in range(count)]
    if shape == "nested ZIP":
        inner = write_zip(tmp_path / "in/inner.zip", files, zipfile.ZIP_STORED)
        files = [("batch/inner.zip", inner.read_bytes()), ("notes.txt", b"x")]
    return write_zip(tmp_path / "in/a.zip", files, zipfile.ZIP_STORED), shape != "ZIP scan"


def fill(disk: Path) -> Path:
    """Write a file that takes every byte left on ``disk``."""
    filler = disk / "filler"
    block = bytes(64 << 10)
    with open(filler, "wb", buffering=0) as out:
        try:
            while True:
                out.write(block)
        except OSError:
            pass
    return filler


def assert_nothing_left(dest: Path) -> None:
    """``dest`` is empty again."""
    assert list(dest.iterdir()) == []


SHAPES = ["loose files", "nested ZIP", "ZIP scan"]


@pytest.mark.parametrize("shape", SHAPES)
def test_space_running_out_is_not_enough_disk_space(
    tmp_path: Path, tmpfs: Callable[[str], Path], shape: str
) -> None:
    """The archive fits when unpacking starts; then another writer takes the rest of the disk."""
    disk = tmpfs("size=2m")
    dest = disk / "dest"
    dest.mkdir()
    zip_path, nested = archive_of(tmp_path, shape, count=6, size=100 << 10)
    written: list[str] = []

    def take_the_rest(file: ExtractedFile) -> None:
        if not written:
            fill(disk)
        written.append(file.path)

    with pytest.raises(NotEnoughDiskSpace) as caught:
        extract_archive(zip_path, dest, NO_RESERVE, workers=1, nested=nested, on_file=take_the_rest)
    assert caught.value.message == "Not enough disk space"
    assert 1 <= len(written) < 6
    assert_nothing_left(dest)
    (disk / "filler").unlink()
    assert shutil.disk_usage(disk).used < 64 << 10


@pytest.mark.parametrize("shape", SHAPES)
def test_inodes_running_out_is_not_enough_disk_space(
    tmp_path: Path, tmpfs: Callable[[str], Path], shape: str
) -> None:
    disk = tmpfs("size=2m,nr_inodes=40")
    dest = disk / "dest"
    dest.mkdir()
    zip_path, nested = archive_of(tmp_path, shape, count=60, size=10)
    with pytest.raises(NotEnoughDiskSpace):
        extract_archive(zip_path, dest, NO_RESERVE, nested=nested)
    assert_nothing_left(dest)


def use_every_inode(disk: Path) -> None:
    """Create empty files on ``disk`` until it has no inode left."""
    for number in range(1000):
        try:
            (disk / f"inode-{number}").touch()
        except OSError:
            return
    raise AssertionError(f"{disk} has inodes to spare")


@pytest.mark.parametrize("shape", SHAPES)
def test_no_inode_left_at_the_start_is_not_enough_disk_space(
    tmp_path: Path, tmpfs: Callable[[str], Path], shape: str
) -> None:
    disk = tmpfs("size=1m,nr_inodes=8")
    dest = disk / "dest"
    dest.mkdir()
    use_every_inode(disk)
    zip_path, nested = archive_of(tmp_path, shape, count=2, size=10)
    with pytest.raises(NotEnoughDiskSpace):
        extract_archive(zip_path, dest, NO_RESERVE, nested=nested)
    assert_nothing_left(dest)


def test_a_work_dir_on_a_full_disk_is_not_enough_disk_space(
    tmpfs: Callable[[str], Path],
) -> None:
    disk = tmpfs("size=1m,nr_inodes=8")
    base = disk / "work"
    base.mkdir()
    use_every_inode(disk)
    with pytest.raises(NotEnoughDiskSpace), work_dir(base):
        pass
    assert list(base.iterdir()) == []
