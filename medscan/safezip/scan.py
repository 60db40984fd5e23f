"""A ZIP scan read in place, entry by entry, with the checks and name rules of extraction."""

from __future__ import annotations

import threading
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, TypeVar

from medscan.safezip.entries import Task, open_zip
from medscan.safezip.extract import Budget, UnpackLimits, inflates_cleanly

_T = TypeVar("_T")


class ZipScan:
    """A ZIP scan read in place, entry by entry, never extracted (see ``open_zip_scan``).

    ``entries`` are the entries ``extract_archive(nested=False)`` would write, by name.
    """

    def __init__(self, archive: zipfile.ZipFile, tasks: list[Task], budget: Budget) -> None:
        self._archive = archive
        self._budget = budget
        self._turns = threading.Lock()
        self.entries = {task.path: task.info for task in tasks}

    def read_clean(
        self, read: Callable[[str, BinaryIO, int], _T], workers: int = 2
    ) -> list[tuple[str, _T]]:
        """``read(name, stream, size)`` of each entry that inflates cleanly, in entry order.

        Those are the files extraction would keep (CRC errors, encrypted entries and unsupported
        methods are left out). Each entry is first inflated within the limits and discarded,
        then handed to ``read`` as a fresh stream; ``workers`` threads share the archive.
        Raises UnpackLimitExceeded, or what ``read`` raises.
        """

        def one(name: str, info: zipfile.ZipInfo) -> tuple[str, _T] | None:
            """``(name, read(...))`` of one entry; None if it does not inflate cleanly."""
            if not inflates_cleanly(self._archive, info, self._budget, self._turns):
                return None
            with self.open(name) as stream:
                return name, read(name, stream, info.file_size)

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = [pool.submit(one, name, info) for name, info in self.entries.items()]
            try:
                results = [future.result() for future in futures]
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        return [result for result in results if result is not None]

    @contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        """A seekable stream of the entry ``name`` (one of ``entries``), closed on exit."""
        with self._turns:  # opening and closing count the ZipFile's streams, unguarded
            stream = self._archive.open(self.entries[name])
        try:
            yield stream  # type: ignore[misc]
        finally:
            with self._turns:
                stream.close()


@contextmanager
def open_zip_scan(zip_path: Path | str, limits: UnpackLimits) -> Iterator[ZipScan]:
    """Open a ZIP scan for reading in place, with the checks and name rules of extraction.

    Nothing is written to disk. Raises NotAZip, CorruptedZip or UnpackLimitExceeded.
    """
    budget = Budget(limits)
    with open_zip(zip_path) as archive:
        yield ZipScan(archive, budget.admit(archive).tasks, budget)
