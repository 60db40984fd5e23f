"""Safe, memory-bounded ZIP handling for bulk runs and ZIP scans (no Flask: a plain library).

``entries`` opens an archive and names its entries (never trusted, never used on disk);
``extract`` writes them out within the unpack limits; ``scan`` reads a ZIP scan in place.
Refusals are ``ArchiveError``s (``errors``); the service maps them to HTTP statuses.
"""

from medscan.safezip.entries import Skipped, is_litter, safe_relpath
from medscan.safezip.errors import (
    ArchiveError,
    CorruptedZip,
    EmptyZip,
    NotAZip,
    NotEnoughDiskSpace,
    UnpackLimitExceeded,
)
from medscan.safezip.extract import (
    ExtractedFile,
    Extraction,
    Unit,
    UnpackLimits,
    check_zip,
    extract_archive,
    inspect_zip,
    is_zip_file,
)
from medscan.safezip.scan import ZipScan, open_zip_scan

__all__ = [
    "ArchiveError",
    "CorruptedZip",
    "EmptyZip",
    "ExtractedFile",
    "Extraction",
    "NotAZip",
    "NotEnoughDiskSpace",
    "Skipped",
    "Unit",
    "UnpackLimitExceeded",
    "UnpackLimits",
    "ZipScan",
    "check_zip",
    "extract_archive",
    "inspect_zip",
    "is_litter",
    "is_zip_file",
    "open_zip_scan",
    "safe_relpath",
]
