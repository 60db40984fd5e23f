"""Hostile ZIP archives for tests: written by zipfile, then patched byte by byte with struct."""

from __future__ import annotations

import struct
import warnings
import zipfile
from pathlib import Path

MIB = 1 << 20

# Field offsets and formats in the local file header and in the central directory record.
_LOCAL_FIELDS = {
    "flag_bits": (6, "<H"),
    "compress_type": (8, "<H"),
    "compress_size": (18, "<I"),
    "file_size": (22, "<I"),
}
_CENTRAL_FIELDS = {
    "flag_bits": (8, "<H"),
    "compress_type": (10, "<H"),
    "compress_size": (20, "<I"),
    "file_size": (24, "<I"),
    "external_attr": (38, "<I"),
    "header_offset": (42, "<I"),
}


def write_zip(
    path: Path,
    entries: dict[str, bytes] | list[tuple[str, bytes]],
    compression: int = zipfile.ZIP_DEFLATED,
) -> Path:
    """Write ``entries`` (name -> content; a list allows duplicate names) to a ZIP at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    items = entries.items() if isinstance(entries, dict) else entries
    with zipfile.ZipFile(path, "w", compression) as archive, warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Duplicate name", UserWarning)
        for name, content in items:
            archive.writestr(zipfile.ZipInfo(name), content, compress_type=compression)
    return path


def write_zeros_zip(
    path: Path, name: str, size: int, extra: dict[str, bytes] | None = None
) -> Path:
    """Write one deflated entry of ``size`` zero bytes, streamed 1 MiB at a time, plus ``extra``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    block = bytes(MIB)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for extra_name, content in (extra or {}).items():
            archive.writestr(extra_name, content)
        with archive.open(name, "w", force_zip64=size > 0xFFFFFFFF) as out:
            for start in range(0, size, MIB):
                out.write(block[: min(MIB, size - start)])
    return path


def write_symlink_zip(path: Path, name: str, target: str, extra: dict[str, bytes]) -> Path:
    """Write a ZIP holding a Unix symlink entry ``name -> target`` plus ordinary ``extra`` files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        link = zipfile.ZipInfo(name)
        link.create_system = 3
        link.external_attr = 0o120777 << 16
        archive.writestr(link, target)
        for extra_name, content in extra.items():
            archive.writestr(extra_name, content)
    return path


def _records(data: bytes, name: str) -> tuple[int, int]:
    """Offsets of the local header and of the central directory record of entry ``name``."""
    raw = name.encode()
    end = data.rindex(b"PK\x05\x06")
    (start,) = struct.unpack_from("<I", data, end + 16)
    if start == 0xFFFFFFFF:  # in the Zip64 end record, which the locator before ``end`` points to
        (zip64_end,) = struct.unpack_from("<Q", data, end - 20 + 8)
        (start,) = struct.unpack_from("<Q", data, zip64_end + 48)
    position = start
    while data[position : position + 4] == b"PK\x01\x02":
        name_length, extra_length, comment_length = struct.unpack_from("<HHH", data, position + 28)
        if data[position + 46 : position + 46 + name_length] == raw:
            (local,) = struct.unpack_from("<I", data, position + 42)
            return local, position
        position += 46 + name_length + extra_length + comment_length
    raise KeyError(name)


def data_offset(path: Path, name: str) -> int:
    """Offset of entry ``name``'s (compressed) data in the file."""
    data = path.read_bytes()
    local, _ = _records(data, name)
    name_length, extra_length = struct.unpack_from("<HH", data, local + 26)
    return local + 30 + name_length + extra_length


def patch_entry(path: Path, name: str, *, raw_name: bytes | None = None, **fields: int) -> Path:
    """Overwrite header fields of entry ``name`` (both headers where the field exists).

    ``raw_name`` replaces the stored name bytes, which must keep their length.
    """
    data = bytearray(path.read_bytes())
    local, central = _records(bytes(data), name)
    for field, value in fields.items():
        for record, table in ((local, _LOCAL_FIELDS), (central, _CENTRAL_FIELDS)):
            if field in table:
                offset, fmt = table[field]
                struct.pack_into(fmt, data, record + offset, value)
    if raw_name is not None:
        assert len(raw_name) == len(name.encode()), "raw_name must keep the name's length"
        data[local + 30 : local + 30 + len(raw_name)] = raw_name
        data[central + 46 : central + 46 + len(raw_name)] = raw_name
    path.write_bytes(bytes(data))
    return path


def flip_byte(path: Path, offset: int) -> Path:
    """Invert the bits of one byte of the file."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def truncate(path: Path, size: int) -> Path:
    """Cut the file to its first ``size`` bytes."""
    path.write_bytes(path.read_bytes()[:size])
    return path
