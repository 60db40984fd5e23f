"""Scan files on disk: named by scan id, written by atomic rename, removed after commits.

A scan row and its file agree whatever happens (CONTRACT, Conventions, Consistency):

- An upload renames its file into place (fresh mtime) and then commits its row. A process
  killed in between leaves a file without a row: an orphan, removed by the sweep once it is
  older than ``MEDSCAN_ORPHAN_GRACE_S``, so a sibling worker's file whose row is about to be
  committed is never taken for one.
- A deleted scan row leaves its id in ``scan_file_deletions`` (a trigger, migration 0007), in
  the deleting transaction. After the commit the file is unlinked and the journal row dropped;
  a process killed in between leaves the journal row, and the sweep completes the deletion.
- The sweep (``check_storage``) runs in every server process at start and every
  ``MEDSCAN_STORAGE_SWEEP_S`` seconds, one process at a time, and from
  ``flask medscan check-storage``. A row whose file is gone is data loss: it is reported
  loudly and never repaired silently.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from flask import Flask, current_app
from sqlalchemy import delete, exists, select
from sqlalchemy.exc import SQLAlchemyError

from medscan.extensions import db
from medscan.models import Scan, ScanFileDeletion
from medscan.uploads import SpooledUpload

log = logging.getLogger(__name__)

SCAN_FILE_NAME = re.compile(r"[0-9a-f]{32}")
# Journal rows and ids are handled this many at a time (one IN list each).
BATCH = 1000

STORAGE_EXTENSION = "medscan.storage"


class ScanStorage:
    """Files under ``root/<2 hex>/<scan id hex>``; uploads spool in ``root/.incoming``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.incoming = self.root / ".incoming"

    def path(self, scan_id: uuid.UUID) -> Path:
        """Where the file of ``scan_id`` lives (a server-made name, never the client's)."""
        return self.root / scan_id.hex[:2] / scan_id.hex

    def keep(self, upload: SpooledUpload, scan_id: uuid.UUID) -> Path:
        """Move a complete upload into place as the file of ``scan_id``, dated now.

        The sweep judges a file without a row by its age, so the age must count from here,
        not from the end of a long upload.
        """
        target = self.path(scan_id)
        target.parent.mkdir(exist_ok=True)
        os.utime(upload.path)
        upload.persist(target)
        return target

    def remove(self, scan_ids: Iterable[uuid.UUID]) -> None:
        """Delete the files of these scans; a file already gone is fine."""
        for scan_id in scan_ids:
            self.path(scan_id).unlink(missing_ok=True)

    def shard_files(self, shard: str) -> dict[uuid.UUID, Path]:
        """The scan files stored under the folder ``shard`` (two hex digits), by scan id."""
        folder = self.root / shard
        if not folder.is_dir():
            return {}
        return {
            uuid.UUID(entry.name): Path(entry.path)
            for entry in os.scandir(folder)
            if SCAN_FILE_NAME.fullmatch(entry.name) and entry.name.startswith(shard)
        }


def scan_storage() -> ScanStorage:
    """The storage of the current app, built at start (``register_storage``)."""
    return current_app.extensions[STORAGE_EXTENSION]


def complete_deletions(storage: ScanStorage, scan_ids: Iterable[uuid.UUID] | None = None) -> int:
    """Unlink the files of committed scan deletions and drop their journal rows.

    ``scan_ids`` limits the work to those scans; None takes the whole journal. Safe to run in
    several processes at once: unlinking twice and deleting a journal row twice are no-ops.
    Returns how many journal rows were handled.
    """
    if scan_ids is not None:
        return _complete(storage, list(scan_ids))
    done = 0
    while batch := db.session.scalars(select(ScanFileDeletion.scan_id).limit(BATCH)).all():
        done += _complete(storage, batch)
        if len(batch) < BATCH:
            break
    db.session.commit()
    return done


def _complete(storage: ScanStorage, scan_ids: list[uuid.UUID]) -> int:
    """Remove the files of journaled deletions, then their journal rows; how many rows went."""
    storage.remove(scan_ids)  # first the files, then the journal rows that vouch for them
    result = db.session.execute(
        delete(ScanFileDeletion).where(ScanFileDeletion.scan_id.in_(scan_ids))
    )
    db.session.commit()
    return result.rowcount


def remove_deleted_files(scan_ids: Iterable[uuid.UUID] | None = None) -> None:
    """After a deletion committed: remove its files now; a failure leaves them to the sweep."""
    try:
        complete_deletions(scan_storage(), scan_ids)
    except (SQLAlchemyError, OSError) as exc:
        db.session.rollback()
        log.warning("Deleted scan files left to the storage sweep: %s", type(exc).__name__)


@dataclass
class StorageCheck:
    """What ``check_storage`` found and did."""

    deletions_completed: int = 0
    pending_deletions: int = 0  # journaled, not completed (a check without repair)
    # Files without a row, and what became of them.
    orphans: list[Path] = field(default_factory=list)
    orphans_removed: int = 0
    recent_orphans: int = 0  # younger than the grace: possibly a row about to be committed
    # Rows whose file is gone: data loss, never repaired here.
    missing: list[uuid.UUID] = field(default_factory=list)
    refused: str | None = None

    @property
    def clean(self) -> bool:
        """Rows and files agree (removed orphans count as fixed, young ones as in flight)."""
        unremoved = len(self.orphans) - self.orphans_removed - self.recent_orphans
        return not self.missing and not unremoved and not self.pending_deletions


def check_storage(
    storage: ScanStorage, *, repair: bool, grace_s: float, guard_empty: bool = False
) -> StorageCheck:
    """Compare scan rows with stored files; with ``repair``, also put them back in step.

    Repairing completes journaled deletions and removes files without rows older than
    ``grace_s`` seconds. ``guard_empty`` (the automatic sweep) refuses to remove anything
    while the scans table is empty but files are stored: that looks like the wrong database,
    not like orphans.
    Memory stays flat: one ``<2 hex>`` folder of files and its rows at a time.
    """
    check = StorageCheck()
    if repair:
        check.deletions_completed = complete_deletions(storage)
    pending = set(db.session.scalars(select(ScanFileDeletion.scan_id)))
    check.pending_deletions = len(pending)
    if guard_empty and repair and not db.session.scalar(select(exists().select_from(Scan))):
        repair = False
        check.refused = "the scans table is empty"
    cutoff = time.time() - grace_s
    for shard in (f"{number:02x}" for number in range(256)):
        # Rows first, then files: a file renamed in after the listing of rows is young, and a
        # row committed after it was renamed in already has its file.
        rows = set(db.session.scalars(select(Scan.id).where(_in_shard(shard))))
        files = storage.shard_files(shard)
        check.missing += _still_missing(storage, rows - files.keys())
        for scan_id in files.keys() - rows - pending:
            path = files[scan_id]
            try:
                young = path.stat().st_mtime > cutoff
            except FileNotFoundError:
                continue  # deleted meanwhile
            check.orphans.append(path)
            if young:
                check.recent_orphans += 1
            elif repair and not _row_exists(scan_id):
                path.unlink(missing_ok=True)
                check.orphans_removed += 1
        db.session.rollback()  # end the read transaction between folders
    return check


def _in_shard(shard: str):
    """Scan ids whose hex starts with ``shard``: a range on the id column (both dialects)."""
    return Scan.id.between(uuid.UUID(shard + "0" * 30), uuid.UUID(shard + "f" * 30))


def _still_missing(storage: ScanStorage, scan_ids: set[uuid.UUID]) -> list[uuid.UUID]:
    """Of rows seen without a file, those that still exist and still have no file."""
    if not scan_ids:
        return []
    present = db.session.scalars(select(Scan.id).where(Scan.id.in_(scan_ids))).all()
    return sorted(scan_id for scan_id in present if not storage.path(scan_id).exists())


def _row_exists(scan_id: uuid.UUID) -> bool:
    """Whether the scan has a row."""
    return db.session.get(Scan, scan_id) is not None


@contextmanager
def sweep_lock(storage: ScanStorage) -> Iterator[bool]:
    """Whether this process got the storage's sweep lock (one sweep at a time, no waiting)."""
    with open(storage.root / ".sweep.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            yield False
            return
        yield True


def log_check(check: StorageCheck) -> None:
    """One line per kind of finding, never a name; lost files loudly."""
    if check.deletions_completed:
        log.warning("Storage: completed %d interrupted deletions", check.deletions_completed)
    if check.orphans_removed:
        log.warning("Storage: removed %d files without a scan row", check.orphans_removed)
    if check.refused and check.orphans:
        log.error(
            "Storage: %d files without a scan row kept, %s; "
            "run `flask medscan check-storage --repair` if the database is the right one",
            len(check.orphans),
            check.refused,
        )
    if check.missing:
        log.error(
            "Storage: %d scans have lost their stored file (data loss), e.g. %s; "
            "see `flask medscan check-storage`",
            len(check.missing),
            ", ".join(str(scan_id) for scan_id in check.missing[:5]),
        )


def sweep_once(app: Flask) -> StorageCheck | None:
    """One automatic reconciliation, unless another process of this storage is doing one."""
    storage: ScanStorage = app.extensions[STORAGE_EXTENSION]
    with app.app_context(), sweep_lock(storage) as locked:
        if not locked:
            return None
        try:
            check = check_storage(
                storage,
                repair=True,
                grace_s=app.config["MEDSCAN_ORPHAN_GRACE_S"],
                guard_empty=True,
            )
        except (SQLAlchemyError, OSError) as exc:
            log.warning("Storage sweep skipped: %s", type(exc).__name__)
            return None
        finally:
            db.session.remove()
        log_check(check)
        return check


class StorageSweeper:
    """Runs ``sweep_once`` in a daemon thread: at once, then every ``interval_s`` (jittered)."""

    def __init__(self, app: Flask, interval_s: int) -> None:
        self.app = app
        self.interval_s = interval_s
        self._started = threading.Event()
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the thread in this process once (the app's first request calls this)."""
        if self._started.is_set():
            return
        with self._lock:
            if not self._started.is_set():
                thread = threading.Thread(target=self._run, name="storage-sweep", daemon=True)
                thread.start()
                self._started.set()

    def _run(self) -> None:
        """Sweep, then sleep ``interval_s`` (jittered), for as long as the process lives."""
        while True:
            try:
                sweep_once(self.app)
            except Exception:  # a bug must not end the sweeps; database errors are one line
                log.exception("Storage sweep failed")
            time.sleep(self.interval_s * random.uniform(0.9, 1.1))


def register_sweeper(app: Flask) -> None:
    """Reconcile storage in each server process from its first request on.

    Not under TESTING, where apps come and go by the hundred, nor in CLI commands, which serve
    no request.
    """
    interval = app.config["MEDSCAN_STORAGE_SWEEP_S"]
    if interval and not app.testing:
        app.before_request(StorageSweeper(app, interval).start)
