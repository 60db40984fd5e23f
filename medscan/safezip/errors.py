"""Why the library refuses an archive; the HTTP statuses are the service's (``medscan.errors``)."""

from __future__ import annotations

import errno

#: The errno values of a full disk or quota.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class ArchiveError(Exception):
    """A ZIP that is refused; ``message`` says why in words fit for the client."""

    message: str = ""

    def __init__(self, message: str | None = None, *, detail: str | None = None) -> None:
        if message is not None:
            self.message = message
        self.detail = detail
        super().__init__(f"{self.message} ({detail})" if detail else self.message)


class NotAZip(ArchiveError):
    """No ZIP signature at the start of the file (or, to the service, no ``.zip`` name)."""

    message = "Only .zip is accepted"


class CorruptedZip(ArchiveError):
    """A ZIP signature, but an unreadable central directory or overlapping entries."""

    message = "Corrupted ZIP"


class EmptyZip(ArchiveError):
    """No file entries other than OS litter."""

    message = "Empty ZIP"


class UnpackLimitExceeded(ArchiveError):
    """Too many bytes, too many entries or a ratio bomb."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class NotEnoughDiskSpace(ArchiveError):
    """The disk cannot hold what the archive unpacks to; the client may retry later."""

    message = "Not enough disk space"

    def __init__(self, *, detail: str | None = None) -> None:
        super().__init__(detail=detail)
