"""Walking the common Part 10 header (explicit VR little endian) without pydicom's machinery.

`scan_header` finds the elements `medscan.analyzer.headers` needs and where the pixel data
starts, for files that pydicom reads the plain way. Anything it is not sure to read exactly as
pydicom does (another transfer syntax, an unknown VR, an undefined length other than a well
formed sequence, a cut file, a command set, a character set pydicom would warn about...) raises
`Unusual`, and the caller reads the file with pydicom instead.
"""

from __future__ import annotations

import struct

from pydicom.charset import python_encoding
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000TransferSyntaxes,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
    RLETransferSyntaxes,
)
from pydicom.valuerep import EXPLICIT_VR_LENGTH_16, EXPLICIT_VR_LENGTH_32

__all__ = ["PIXEL_TAGS", "UNDEFINED_LENGTH", "ScannedHeader", "Truncated", "Unusual", "scan_header"]

#: (Float/Double Float) Pixel Data: where a header ends.
PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
UNDEFINED_LENGTH = 0xFFFFFFFF
#: Syntaxes whose dataset pydicom reads as explicit VR little endian, as it is in the file.
SCANNED_SYNTAXES = frozenset(
    {
        ExplicitVRLittleEndian,
        *JPEGTransferSyntaxes,
        *JPEGLSTransferSyntaxes,
        *JPEG2000TransferSyntaxes,
        *RLETransferSyntaxes,
    }
)
_SHORT_VRS = frozenset(vr.encode() for vr in EXPLICIT_VR_LENGTH_16)
_LONG_VRS = frozenset(vr.encode() for vr in EXPLICIT_VR_LENGTH_32)
_CHARACTER_SETS = frozenset({"", *python_encoding})
_ELEMENT = struct.Struct("<HH2sH").unpack_from
_LENGTH = struct.Struct("<L").unpack_from
_ITEM_HEADER = struct.Struct("<LL").unpack_from
_GROUP_LENGTH = 0x00020000
_TRANSFER_SYNTAX = 0x00020010
_CHARACTER_SET = 0x00080005
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQUENCE_END = 0xFFFEE0DD


class Unusual(Exception):
    """The file is not one `scan_header` reads exactly as pydicom does."""


class Truncated(Unusual):
    """The header goes on past the bytes given (more of the file may hold it)."""


class ScannedHeader:
    """The raw (VR, value) of the wanted elements, the syntax and the pixel data's place."""

    __slots__ = ("elements", "pixel", "transfer_syntax_uid")

    def __init__(
        self,
        transfer_syntax_uid: str,
        elements: dict[int, tuple[str, bytes]],
        pixel: tuple[int, int] | None,
    ) -> None:
        self.transfer_syntax_uid = transfer_syntax_uid
        self.elements = elements
        #: (length, offset of the value) of the pixel data element, None when there is none.
        self.pixel = pixel


def scan_header(data: bytes, size: int, wanted: frozenset[int]) -> ScannedHeader:
    """Walk the first bytes of a Part 10 file of `size` bytes up to its pixel data.

    `wanted` are the top-level tags whose raw values are kept (the last copy, as pydicom does).

    Raises
    ------
    Truncated
        The header goes on past `data` (and `data` is shorter than the file).
    Unusual
        Anything else this walk leaves to pydicom, a file cut inside its header included.
    """
    if data[128:132] != b"DICM":
        raise Unusual("no DICM prefix")
    position, syntax = _file_meta(data, size)
    elements: dict[int, tuple[str, bytes]] = {}
    while position != size:
        tag, vr, length, start = _element_header(data, size, position)
        if tag in PIXEL_TAGS:
            return ScannedHeader(syntax, elements, (length, start))
        if tag >> 16 in (0x0000, 0xFFFE):
            raise Unusual(f"element {tag:08X} in the dataset")
        position = _skip_value(data, size, tag, vr, length, start)
        if tag in wanted:
            elements[tag] = (vr.decode(), data[start:position])
    return ScannedHeader(syntax, elements, None)


def _file_meta(data: bytes, size: int) -> tuple[int, str]:
    """Where the dataset starts after the group 0002 elements, and the transfer syntax."""
    position = 132
    tag, vr, length, start = _element_header(data, size, position)
    if (tag, vr, length) != (_GROUP_LENGTH, b"UL", 4):  # pydicom checks the first one's value
        raise Unusual("file meta does not start with its group length")
    syntax = None
    while tag >> 16 == 0x0002:
        if length == UNDEFINED_LENGTH:
            raise Unusual("file meta element of undefined length")
        position = _within(data, size, start + length)
        if tag == _TRANSFER_SYNTAX:
            syntax = data[start:position].decode("ascii", "replace").rstrip("\0 ")
        if position == size:
            break
        tag, vr, length, start = _element_header(data, size, position)
    if syntax not in SCANNED_SYNTAXES:
        raise Unusual(f"transfer syntax {syntax}")
    return position, syntax


def _element_header(data: bytes, size: int, position: int) -> tuple[int, bytes, int, int]:
    """The tag, VR, value length and value offset of the element at `position`."""
    _within(data, size, position + 8)
    group, element, vr, length = _ELEMENT(data, position)
    if vr in _LONG_VRS:
        _within(data, size, position + 12)
        return group << 16 | element, vr, _LENGTH(data, position + 8)[0], position + 12
    if vr not in _SHORT_VRS:
        raise Unusual(f"VR {vr!r}")
    return group << 16 | element, vr, length, position + 8


def _skip_value(data: bytes, size: int, tag: int, vr: bytes, length: int, start: int) -> int:
    """Where the element whose value starts at `start` ends."""
    if length == UNDEFINED_LENGTH:
        if vr != b"SQ":
            raise Unusual(f"{vr!r} of undefined length")
        return _skip_sequence(data, size, start)
    end = _within(data, size, start + length)
    if tag == _CHARACTER_SET:
        values = data[start:end].decode("ascii", "replace").rstrip("\0 ").split("\\")
        if not _CHARACTER_SETS.issuperset(values):
            raise Unusual("character set pydicom would correct")
    return end


def _skip_sequence(data: bytes, size: int, position: int) -> int:
    """Where an undefined-length sequence whose items start at `position` ends."""
    while True:
        tag, length = _item_header(data, size, position)
        position += 8
        if tag == _SEQUENCE_END and length == 0:
            return position
        if tag != _ITEM:
            raise Unusual(f"element {tag:08X} where a sequence item was expected")
        if length == UNDEFINED_LENGTH:
            position = _skip_item(data, size, position, None)
        else:
            position = _skip_item(data, size, position, _within(data, size, position + length))


def _skip_item(data: bytes, size: int, position: int, end: int | None) -> int:
    """Where a sequence item ends: at `end`, or after its delimiter when `end` is None."""
    while position != end:
        if end is None:
            tag, length = _item_header(data, size, position)
            if tag == _ITEM_END and length == 0:
                return position + 8
        tag, vr, length, start = _element_header(data, size, position)
        if tag >> 16 == 0xFFFE:
            raise Unusual(f"element {tag:08X} in a sequence item")
        position = _skip_value(data, size, tag, vr, length, start)
        if end is not None and position > end:
            raise Unusual("element past the end of its sequence item")
    return position


def _item_header(data: bytes, size: int, position: int) -> tuple[int, int]:
    """The tag and length of an item or delimiter at `position`."""
    _within(data, size, position + 8)
    group_element, length = _ITEM_HEADER(data, position)
    return (group_element & 0xFFFF) << 16 | group_element >> 16, length


def _within(data: bytes, size: int, end: int) -> int:
    """`end`, if the first `end` bytes are in `data`."""
    if end > len(data):
        if len(data) < size:
            raise Truncated(f"header continues past {len(data)} bytes")
        raise Unusual("file cut inside its header")
    return end
