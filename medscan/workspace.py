"""Work folders and spooled files, named ``medscan-<pid>-...`` so a sweep can tell whose they are.

The folders bulk runs and ZIP scans are unpacked into, and spooled uploads, are named with the
owning process's pid. ``sweep_stale_work_dirs`` removes those
whose process is gone: what a killed worker left behind.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from medscan.safezip.errors import DISK_FULL, NotEnoughDiskSpace

_OWNED_NAME = re.compile(r"medscan-(\d{1,9})-")


def owned_prefix(kind: str = "") -> str:
    """The name prefix of this process's work folders and files: ``medscan-<pid>-<kind>``."""
    return f"medscan-{os.getpid()}-{kind}"


@contextmanager
def work_dir(base: Path) -> Iterator[Path]:
    """A fresh directory ``base/medscan-<pid>-<random>``, removed on exit whatever happens.

    Raises NotEnoughDiskSpace when the disk cannot hold even the directory.
    """
    try:
        base.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=owned_prefix(), dir=base))
    except OSError as exc:
        if exc.errno in DISK_FULL:
            raise NotEnoughDiskSpace(detail=f"creating a work folder in {base}") from exc
        raise
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def sweep_stale_work_dirs(base: Path) -> int:
    """Remove ``medscan-<pid>-*`` work directories and spooled upload files under ``base`` whose
    owning process is gone; return how many.

    A recycled pid keeps a stale entry until that process ends too (erring towards keeping).
    """
    if not base.is_dir():
        return 0
    removed = 0
    for entry in base.iterdir():
        match = _OWNED_NAME.match(entry.name)
        if not match or entry.is_symlink() or _alive(int(match[1])):
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed += 1
    return removed


def _alive(pid: int) -> bool:
    """Whether a process exists (one we may not signal counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
