"""Scan files on disk: named by scan id, written by atomic rename, removed after commits."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path

from flask import current_app

from medscan.uploads import SpooledUpload


class ScanStorage:
    """Files under ``root/<2 hex>/<scan id hex>``; uploads spool in ``root/.incoming``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.incoming = self.root / ".incoming"

    def path(self, scan_id: uuid.UUID) -> Path:
        """Where the file of ``scan_id`` lives (a server-made name, never the client's)."""
        return self.root / scan_id.hex[:2] / scan_id.hex

    def keep(self, upload: SpooledUpload, scan_id: uuid.UUID) -> Path:
        """Move a complete upload into place as the file of ``scan_id``."""
        target = self.path(scan_id)
        target.parent.mkdir(exist_ok=True)
        upload.persist(target)
        return target

    def remove(self, scan_ids: Iterable[uuid.UUID]) -> None:
        """Delete the files of these scans; a file already gone is fine."""
        for scan_id in scan_ids:
            self.path(scan_id).unlink(missing_ok=True)


def scan_storage() -> ScanStorage:
    """The storage of the current app (its folders are made at start)."""
    return ScanStorage(current_app.config["MEDSCAN_STORAGE_DIR"])
