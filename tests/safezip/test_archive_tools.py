"""Archives made by other tools (Info-ZIP zip, 7-Zip, bsdtar) unpack as Python's own ZIP does.

A test whose tool is missing skips, unless MEDSCAN_REQUIRE_TOOLS=1 (then it fails).
"""

from __future__ import annotations

import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from medscan.safezip import UnpackLimits, extract_archive, inspect_zip
from tests.tools import require_tool
from tests.zip_factory import patch_entry

LIMITS = UnpackLimits()
DICOM = bytes(128) + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00" + bytes(4)
#: The tree every tool archives: nested folders, Cyrillic names, an empty folder.
TREE = {
    "study/Иванов И.И/КТ 1/001.dcm": DICOM + bytes(8000),
    "study/Иванов И.И/КТ 1/002.dcm": DICOM + b"\x01" * 8000,
    "study/Петров/снимок.dcm": DICOM,
    "notes.txt": "заметки, notes\n".encode() * 50,
    "deep/a/b/c/d.txt": b"d",
    "empty.txt": b"",
}
EMPTY_FOLDERS = ["empty", "study/пустая"]
TOOLS = {
    "Info-ZIP zip": ["zip", "-rq", "{out}", "."],
    "Info-ZIP zip, Zip64": ["zip", "-rq", "-fz", "{out}", "."],
    "7-Zip": ["7z", "a", "-tzip", "-bd", "-bso0", "{out}", "."],
    "bsdtar": [
        "bsdtar",
        "--format",
        "zip",
        "-cf",
        "{out}",
        "deep",
        "empty",
        "empty.txt",
        "notes.txt",
        "study",
    ],
}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """TREE and EMPTY_FOLDERS written to disk."""
    root = tmp_path / "tree"
    for name, content in TREE.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    for name in EMPTY_FOLDERS:
        (root / name).mkdir(parents=True)
    return root


def made_by(tool: str, tree: Path, out: Path) -> Path:
    """Archive ``tree`` with ``tool``, run in a UTF-8 locale from inside the tree."""
    command = TOOLS[tool]
    require_tool(command[0])
    environment = os.environ | {"LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    arguments = [str(out) if part == "{out}" else part for part in command]
    subprocess.run(arguments, cwd=tree, env=environment, check=True, capture_output=True)
    return out


def python_zip(tree: Path, out: Path) -> Path:
    """Archive ``tree`` with zipfile, folders included, as ``zipfile.ZipFile.write`` does."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(tree.rglob("*")):
            archive.write(path, path.relative_to(tree).as_posix())
    return out


def unpacked(zip_path: Path, dest: Path) -> tuple[dict[str, bytes], list, int]:
    """Files (name -> content), skipped entries and litter count of an extraction."""
    dest.mkdir()
    result = extract_archive(zip_path, dest, LIMITS)
    files = {file.path: file.disk_path.read_bytes() for unit in result.units for file in unit.files}
    return files, result.skipped, result.litter


@pytest.mark.parametrize("tool", TOOLS)
def test_a_tools_archive_unpacks_as_pythons_does(tmp_path: Path, tree: Path, tool: str) -> None:
    theirs = made_by(tool, tree, tmp_path / "theirs.zip")
    with zipfile.ZipFile(theirs) as archive:
        assert any(info.filename.endswith("/") for info in archive.infolist())  # folder entries
    ours = python_zip(tree, tmp_path / "ours.zip")
    expected = (TREE, [], 0)
    assert unpacked(ours, tmp_path / "ours") == expected
    assert unpacked(theirs, tmp_path / "theirs") == expected
    assert inspect_zip(theirs, LIMITS, lambda stream: stream.read(132)[128:] == b"DICM")


def test_a_misflagged_name_in_a_zip64_archive_is_decoded_alone(tmp_path: Path, tree: Path) -> None:
    """The central directory is found through the Zip64 end record (``zip -fz`` writes one)."""
    zip_path = made_by("Info-ZIP zip, Zip64", tree, tmp_path / "z64.zip")
    assert b"PK\x06\x06" in zip_path.read_bytes()
    patch_entry(zip_path, "notes.txt", raw_name=b"note\xff.txt", flag_bits=0x800)
    files, skipped, _ = unpacked(zip_path, tmp_path / "out")
    expected = {
        ("note\ufffd.txt" if name == "notes.txt" else name): data for name, data in TREE.items()
    }
    assert (files, skipped) == (expected, [])
