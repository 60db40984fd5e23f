"""Bulk runs end to end: ``POST /api/bulk-runs`` against ``unzip`` of the same archive.

    PYTHONPATH=. python bench/bulk.py --sizes 100 1000 [--py-spy]

For each size (MB of archive) it builds a realistic archive: 512x512 int16 CT studies of
100-300 slices with chest-like noisy pixels (deflate ~2.3:1), two as loose folders
(``loose/patient_NN/series_1/``), the rest (at least two) as nested study ZIPs
(``batchK/<finding>_anon.zip``, stored in the outer ZIP as Info-ZIP's ``zip`` stores ``.zip``).
Then, --repeat times and interleaved: ``unzip -qo`` into an empty folder on the same disk (and,
as a second floor, ``unzip`` of the nested ZIPs it leaves), and the bulk run through a fresh
medscan gunicorn per size (1 worker, shipped settings), timed by curl. It prints medians, the
ratio service/unzip, the worker's VmHWM, checks the XLSX report once, and times the phases of
``medscan.bulk.studies.process_archive`` in-process on the same archive. With --py-spy, one
more (untimed) run per size is sampled by py-spy in the worker and its samples are split by
phase.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import re
import shutil
import signal
import subprocess
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import common
import numpy as np
from common import MIB, Gunicorn, curl, median, proc_status, service_env, spread
from openpyxl import load_workbook
from pydicom.filewriter import dcmwrite
from pydicom.uid import generate_uid

import medscan.bulk.studies
import medscan.safezip.extract
from medscan.analyzer import REPORT_KEYS, StubModel
from medscan.safezip import UnpackLimits
from medscan.workspace import work_dir
from tests.dicom_factory import ct_dataset

FINDINGS = ("norma", "pneumonia", "covid", "nodule", "emphysema", "fibrosis")
LOOSE_STUDIES = 2
#: Measured deflate ratio of ``common.ct_pixels`` slices, to plan an archive's size.
SLICE_BYTES_PACKED = 512 * 512 * 2 / 2.3
#: The service's progress log line after each study ("bulk run: study 3/23, 4.2 s").
PROGRESS = re.compile(r"study (?P<done>\d+)/(?P<total>\d+), (?P<s>[\d.]+) s")


@dataclass(frozen=True)
class StudySpec:
    """One study of an archive: where it goes, how many slices, its RNG seed."""

    path_to_study: str
    member: str
    slices: int
    seed: int
    nested: bool


def plan(size_mb: int) -> list[StudySpec]:
    """About `size_mb` MB of studies (at least 4, 100-300 slices each, ~200 on average).

    Studies 0 and 1 are ``batch1/norma_anon.zip`` and ``batch1/pneumonia_anon.zip``, 2 and 3
    the loose folders, the rest more nested ZIPs, six per batch folder.
    """
    rng = np.random.default_rng(size_mb)
    total_slices = size_mb * MIB / SLICE_BYTES_PACKED
    count = max(2 + LOOSE_STUDIES, round(total_slices / 200))
    weights = rng.uniform(0.7, 1.3, count)
    counts = np.clip(np.rint(weights / weights.sum() * total_slices), 100, 300).astype(int)
    specs: list[StudySpec] = []
    nested = 0
    for index, slices in enumerate(counts):
        if 2 <= index < 2 + LOOSE_STUDIES:
            folder = f"loose/patient_{index - 1:02d}"
            specs.append(StudySpec(f"{folder}/series_1", folder, int(slices), index, False))
        else:
            batch = nested // len(FINDINGS) + 1
            path = f"batch{batch}/{FINDINGS[nested % len(FINDINGS)]}_anon.zip"
            specs.append(StudySpec(path, path, int(slices), index, True))
            nested += 1
    return specs


def study_slices(spec: StudySpec) -> list[tuple[str, bytes]]:
    """Part 10 files of one study (one series), named ``series_1/IMG_NNNN.dcm``."""
    rng = np.random.default_rng(spec.seed)
    study_uid, series_uid = generate_uid(), generate_uid()
    files = []
    for index in range(spec.slices):
        ds = ct_dataset(
            index=index,
            study_uid=study_uid,
            series_uid=series_uid,
            patient_id=f"ANON{spec.seed:04d}",
            pixels=common.ct_pixels(index, 512, 512, rng),
        )
        buffer = io.BytesIO()
        dcmwrite(buffer, ds, enforce_file_format=True)
        files.append((f"series_1/IMG_{index + 1:04d}.dcm", buffer.getvalue()))
    return files


def build_member(spec: StudySpec, staging: Path) -> Path:
    """A nested study ZIP (deflated) or a folder of loose slices, under `staging`."""
    target = staging / f"{spec.seed:04d}"
    if spec.nested:
        target = target.with_suffix(".zip")
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in study_slices(spec):
                archive.writestr(name, data)
    else:
        for name, data in study_slices(spec):
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(data)
    return target


def _build(item: tuple[StudySpec, Path]) -> Path:
    return build_member(*item)


def build_archive(size_mb: int, target: Path) -> list[StudySpec]:
    """Write the archive of `size_mb` MB (reused when already there); return its studies."""
    return build_specs(plan(size_mb), target)


def build_specs(specs: list[StudySpec], target: Path) -> list[StudySpec]:
    """Write an archive of the studies `specs` (reused when already there); return them."""
    manifest = target.with_suffix(".json")
    if target.exists() and manifest.exists():
        return [StudySpec(**item) for item in json.loads(manifest.read_text())]
    staging = target.parent / f"staging_{target.stem}"
    staging.mkdir(parents=True, exist_ok=True)
    with (
        multiprocessing.Pool(2) as pool,
        zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive,
    ):
        for spec, member in zip(
            specs, pool.imap(_build, [(spec, staging) for spec in specs]), strict=True
        ):
            if spec.nested:
                archive.write(member, spec.member, compress_type=zipfile.ZIP_STORED)
                member.unlink()
            else:
                for file in sorted(member.rglob("*.dcm")):
                    archive.write(file, f"{spec.member}/{file.relative_to(member)}")
                shutil.rmtree(member)
    shutil.rmtree(staging)
    manifest.write_text(json.dumps([asdict(spec) for spec in specs]))
    return specs


def time_unzip(archive: Path, out: Path) -> tuple[float, float]:
    """Seconds of ``unzip -qo`` into an empty `out`, and of unzipping the nested ZIPs after it."""
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    subprocess.run(["unzip", "-qo", str(archive), "-d", str(out)], check=True)
    outer = time.perf_counter() - started
    started = time.perf_counter()
    for number, nested in enumerate(sorted(out.rglob("*.zip"))):
        subprocess.run(["unzip", "-qo", str(nested), "-d", str(out / f"_n{number}")], check=True)
    inner = time.perf_counter() - started
    shutil.rmtree(out)
    return outer, inner


def check_xlsx(data: bytes, specs: list[StudySpec]) -> str:
    """The Report sheet has the seven keys and one Success row per study of the archive."""
    book = load_workbook(io.BytesIO(data), read_only=True)
    rows = list(book["Report"].iter_rows(values_only=True))
    assert rows[0] == tuple(REPORT_KEYS), rows[0]
    status = REPORT_KEYS.index("processing_status")
    paths = sorted(row[0] for row in rows[1:])
    assert paths == sorted(spec.path_to_study for spec in specs), paths
    assert all(row[status] == "Success" for row in rows[1:]), rows
    return f"XLSX: {len(rows) - 1} rows for {len(specs)} studies, all Success"


def phases(archive: Path, work_base: Path) -> dict[str, float]:
    """Seconds per phase of one in-process ``process_archive`` run on `archive`."""
    spent: dict[str, float] = {}

    def timer(module: object, name: str, label: str) -> Callable[[], None]:
        original = getattr(module, name)
        spent[label] = 0.0  # printed in this order

        def wrapper(*args: object, **kwargs: object) -> object:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - started

        setattr(module, name, wrapper)
        return lambda: setattr(module, name, original)

    restores = [
        timer(medscan.bulk.studies, "extract_archive", "extract (all)"),
        timer(medscan.safezip.extract, "_unpack_all_nested", "  of which nested ZIPs"),
        # Headers are read while extraction runs: this is thread time, overlapping "extract".
        timer(medscan.bulk.studies, "try_read_instance", "read headers (thread time)"),
        timer(medscan.bulk.studies, "analyze_study", "analyze (stub model)"),
    ]
    try:
        with work_dir(work_base) as folder:
            started = time.perf_counter()
            medscan.bulk.studies.process_archive(
                archive,
                folder,
                archive_name=archive.name,
                limits=UnpackLimits(),
                model=StubModel(),
                threshold=0.5,
            )
            spent["process_archive total"] = time.perf_counter() - started
        return spent
    finally:
        for restore in restores:
            restore()


#: Where a py-spy sample belongs: the first of these frames found in its stack, else "other".
SAMPLE_PHASES = (
    ("receive: gunicorn Body.read", "Body.read"),
    ("receive: spooled upload's writer thread", "SpooledUpload._write_pending"),
    ("receive: multipart decoding", "StreamingMultiPartParser.parse"),
    ("extract: inflate + CRC (zipfile)", "ZipExtFile.read"),
    ("extract: other (file writes, mkdir)", "_extract_entries.<locals>.work"),
    ("read headers", "try_read_instance"),
    ("work dir removal", "_GeneratorContextManager.__exit__"),
    ("DB (commit)", "Session.commit"),
)


def sample_worker(service: Gunicorn, archive: Path, output: Path) -> None:
    """Sample the worker with py-spy during one bulk run; print the share of each phase."""
    spy = subprocess.Popen(
        ["py-spy", "record", "--pid", str(service.worker_pid()), "--threads", "--nonblocking",
         "--rate", "200", "--format", "raw", "-o", str(output)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1)
    result = curl(service.url + "/api/bulk-runs", "-F", f"file=@{archive}")
    assert result.status == 201, result
    spy.send_signal(signal.SIGINT)
    spy.wait(timeout=60)
    counts = dict.fromkeys([label for label, _ in SAMPLE_PHASES] + ["other"], 0)
    for line in output.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        frames = {frame.split(" (")[0] for frame in stack.split(";")}
        label = next((label for label, frame in SAMPLE_PHASES if frame in frames), "other")
        counts[label] += int(number)
    total = sum(counts.values())
    print(f"py-spy, one more run ({result.seconds:.2f} s under sampling), "
          f"{total} busy-thread samples at 200 Hz (both threads of the pool counted):")
    for label, count in counts.items():
        print(f"  {label:46s} {count:6d}  {100 * count / total:5.1f}%")


def bench_size(
    size_mb: int, root: Path, db_url: str, port: int, repeat: int, py_spy: bool
) -> dict[str, object]:
    """Build, then measure one archive size with its own gunicorn; print and return figures."""
    archive = root / f"bulk_{size_mb}mb.zip"
    started = time.perf_counter()
    specs = build_archive(size_mb, archive)
    slices = sum(spec.slices for spec in specs)
    print(f"\n== {archive.name}: {archive.stat().st_size / MIB:.0f} MiB, {len(specs)} studies, "
          f"{slices} slices ({slices * 512 * 512 * 2 / MIB:.0f} MiB of pixels), "
          f"built in {time.perf_counter() - started:.0f} s")

    log = root / f"svc_{size_mb}.log"
    times: dict[str, list[float]] = {"unzip": [], "unzip + nested": [], "service": []}
    env = service_env(db_url, root / f"svc_{size_mb}")
    with Gunicorn("wsgi:app", port, env, log) as service:
        assert curl(service.url + "/api/health").status == 200
        worker = service.worker_pid()
        before = proc_status(worker)
        for attempt in range(repeat):
            outer, inner = time_unzip(archive, root / "unzipped")
            times["unzip"].append(outer)
            times["unzip + nested"].append(outer + inner)
            result = curl(service.url + "/api/bulk-runs", "-F", f"file=@{archive}")
            assert result.status == 201, result
            times["service"].append(result.seconds)
            if attempt == 0:
                report = curl(f"{service.url}/api/bulk-runs/{result.json()['id']}/report.xlsx")
                assert report.status == 200, report.status
                print(check_xlsx(report.body, specs))
        after = proc_status(worker)
        if py_spy:
            sample_worker(service, archive, root / f"py-spy_{size_mb}.txt")
    processing = [
        float(m["s"]) for m in PROGRESS.finditer(log.read_text()) if m["done"] == m["total"]
    ][:repeat]

    for name, values in times.items():
        print(f"{name:15s} median {median(values):7.2f} s  "
              f"runs {' '.join(f'{v:.2f}' for v in values)}  spread {spread(values)}")
    ratio = median(times["service"]) / median(times["unzip"])
    ratio_all = median(times["service"]) / median(times["unzip + nested"])
    print(f"ratio service/unzip {ratio:.2f}; service/(unzip + nested) {ratio_all:.2f}")
    print(f"worker VmHWM: {before['VmHWM'] / 1024:.1f} MiB at start, "
          f"{after['VmHWM'] / 1024:.1f} MiB after {repeat} runs")
    receive = [total - inside for total, inside in zip(times["service"], processing, strict=True)]
    print(f"in the request (service log): process_archive median {median(processing):.2f} s, "
          f"the rest (receive + spool + DB) median {median(receive):.2f} s")

    profile = [phases(archive, root / "work") for _ in range(repeat)]
    print("in-process process_archive phases (median of "
          f"{repeat}; header reading and extraction use 2 threads):")
    for label in profile[0]:
        values = [run[label] for run in profile]
        print(f"  {label:26s} {median(values):7.2f} s   runs "
              f"{' '.join(f'{v:.2f}' for v in values)}")
    return {"size": size_mb, "ratio": ratio, "hwm_mib": after["VmHWM"] / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000], help="MB")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/medscan_bench_io/bulk"))
    parser.add_argument("--keep-data", action="store_true", help="keep (and reuse) archives")
    parser.add_argument("--port", type=int, default=8751, help="one port per size from here")
    parser.add_argument("--db-name", default="medscan_bench_io")
    parser.add_argument("--py-spy", action="store_true", help="sample one more run (py-spy)")
    parser.add_argument("--floor", action="store_true", help="issue 16's ratios (bench/floor.py)")
    parser.add_argument("--nested-studies", type=int, default=16, help="--floor: nested ZIPs")
    parser.add_argument("--no-entries", action="store_true", help="--floor: skip 10k/100k entries")
    args = parser.parse_args()

    root: Path = args.data_dir
    root.mkdir(parents=True, exist_ok=True)
    common.same_disk(root, common.REPO)
    try:
        with common.database(args.db_name) as db_url:
            if args.floor:
                import floor

                floor.run_floor(
                    root, db_url, args.port, args.repeat, args.nested_studies, not args.no_entries
                )
                return
            results = [
                bench_size(size, root, db_url, args.port + number, args.repeat, args.py_spy)
                for number, size in enumerate(args.sizes)
            ]
        peaks = [result["hwm_mib"] for result in results]
        print(f"\nworker peak RSS per size: {', '.join(f'{p:.0f} MiB' for p in peaks)}; "
              f"max/min {max(peaks) / min(peaks):.2f}")
    finally:
        for path in root.iterdir():
            if not (args.keep_data and (path.suffix in (".zip", ".json") or path.name == "slices")):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        if not args.keep_data:
            root.rmdir()


if __name__ == "__main__":
    main()
