"""Archives whose entries all have one name: time at 1k/10k/100k repeats, against listings.

    PYTHONPATH=. python bench/dupnames.py

For each count it writes a ZIP of that many entries all named ``a.dcm`` (``zipfile.writestr`` in
a loop, as the issue did), then times, best of --repeat, in-process:
- baselines on the same archive: ``zipfile.ZipFile(path).infolist()`` and ``unzip -t``;
- ``medscan.bulk.studies.process_archive`` (stub model), as a bulk run does, and
  ``medscan.safezip.inspect_zip``, as a ZIP scan upload does.
Linear growth: 10x the entries takes about 10x the time, and the ratio to the listing stays flat.
No database and no server. Everything it writes under --data-dir is removed at the end.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import time
import warnings
import zipfile
from collections.abc import Callable
from math import nan
from pathlib import Path

from medscan.analyzer import load_model
from medscan.bulk.studies import process_archive
from medscan.safezip import UnpackLimits, inspect_zip
from medscan.workspace import work_dir

LIMITS = UnpackLimits()  # 100,000 entries at most: the largest count is right at the limit


def build(count: int, target: Path) -> Path:
    """A ZIP of ``count`` entries all named ``a.dcm``, each holding ``x``."""
    with zipfile.ZipFile(target, "w") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name": the point of the archive
        for _ in range(count):
            archive.writestr("a.dcm", b"x")
    return target


def best(action: Callable[[], object], repeat: int) -> float:
    """The least wall time of ``repeat`` calls, in seconds."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def bulk_run(archive: Path, base: Path, count: int) -> None:
    """Process the archive as a bulk run does: one row and ``count - 1`` duplicate lines."""
    with work_dir(base) as folder:
        result = process_archive(
            archive,
            folder,
            archive_name=archive.name,
            limits=LIMITS,
            model=load_model(None),
            threshold=0.5,
        )
    assert (len(result.rows), len(result.skipped)) == (1, count - 1)


def unzip_test(archive: Path) -> None:
    """``unzip -t``: reads and CRC-checks every entry, printing a line for each (discarded)."""
    subprocess.run(["unzip", "-t", str(archive)], check=True, stdout=subprocess.DEVNULL)


def measure(archive: Path, count: int, work: Path, repeat: int) -> dict[str, float]:
    """Seconds (best of ``repeat``) of the baselines and of medscan on one archive."""
    return {
        "infolist": best(lambda: zipfile.ZipFile(archive).infolist(), repeat),
        "unzip -t": best(lambda: unzip_test(archive), repeat) if shutil.which("unzip") else nan,
        "bulk run": best(lambda: bulk_run(archive, work, count), repeat),
        "inspect_zip": best(lambda: inspect_zip(archive, LIMITS, lambda stream: False), repeat),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/medscan_bench_io/dupnames"))
    args = parser.parse_args()
    root: Path = args.data_dir
    root.mkdir(parents=True, exist_ok=True)
    columns = ["infolist", "unzip -t", "bulk run", "inspect_zip", "bulk/list", "inspect/list"]
    print(f"{'entries':>8s} {'ZIP KiB':>8s} " + " ".join(f"{name:>11s}" for name in columns))
    try:
        previous: tuple[int, dict[str, float]] | None = None
        for count in args.counts:
            archive = build(count, root / f"a{count}.zip")
            times = measure(archive, count, root / "work", args.repeat)
            archive_kib = archive.stat().st_size / 1024
            archive.unlink()
            cells = [f"{seconds:9.3f} s" for seconds in times.values()]
            cells += [
                f"{times[name] / times['infolist']:11.1f}" for name in ("bulk run", "inspect_zip")
            ]
            print(f"{count:8d} {archive_kib:8.0f} " + " ".join(cells))
            if previous is not None:
                growth = ", ".join(
                    f"{name} x{times[name] / previous[1][name]:.1f}" for name in times
                )
                print(f"{'':17s}x{count / previous[0]:.0f} entries: {growth}")
            previous = count, times
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
