"""Issue 16's ratios: bulk runs against the machine's floor, each measured in the same run.

    PYTHONPATH=. python bench/bulk.py --floor [--nested-studies 16] [--repeat 3]

Cases (each with a fresh gunicorn, 1 worker, shipped settings; timings interleaved with their
baseline, medians of --repeat):
- flat: one 300-slice 512x512 CT study as a flat deflated ZIP; service / ``unzip -qo``.
- nested: N study ZIPs of 250 slices stored in one archive; service / (``unzip`` of both levels).
- receive: a body of random bytes named ``.zip`` (received whole, then refused as not a ZIP)
  against a bare WSGI app reading ``wsgi.input`` in 1 MiB chunks; throughput ratio.
- headers: ``read_instance`` per file against a bare ``dcmread(stop_before_pixels=True)`` of the
  same 300 slices, in-process, one thread.
- entries: 10,000 and 100,000 tiny DICOM entries; time ratio (linear = 10) and worker VmHWM.
"""

from __future__ import annotations

import io
import os
import shutil
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from bulk import StudySpec, build_specs, study_slices, time_unzip
from common import MIB, REPO, Gunicorn, curl, median, proc_status, service_env, spread
from pydicom import dcmread
from pydicom.filewriter import dcmwrite
from pydicom.uid import generate_uid

from medscan.analyzer import read_instance
from tests.dicom_factory import ct_dataset

FLAT_SLICES = 300
NESTED_SLICES = 250
ENTRIES_PER_STUDY = 500
RECEIVE_MIB = 1024
#: A SOPInstanceUID of fixed length, replaced in the bytes of each tiny entry.
UID_PLACEHOLDER = "1.2.826.0.1.3680043.8.498.9" + "0" * 30


@dataclass
class Case:
    """One case's figures: the ratio against its target and the worker's peak RSS."""

    name: str
    ratio: float
    target: str
    hwm_mib: float | None = None
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        hwm = f", worker VmHWM {self.hwm_mib:.0f} MiB" if self.hwm_mib else ""
        return f"{self.name:9s} ratio {self.ratio:6.2f} (target {self.target}){hwm}"


def flat_specs() -> list[StudySpec]:
    """One loose study of 300 slices."""
    return [StudySpec("ct/series_1", "ct", FLAT_SLICES, 7, False)]


def nested_specs(count: int) -> list[StudySpec]:
    """`count` nested study ZIPs of 250 slices, six to a batch folder."""
    paths = [f"batch{n // 6 + 1}/study_{n:02d}_anon.zip" for n in range(count)]
    return [StudySpec(path, path, NESTED_SLICES, 100 + n, True) for n, path in enumerate(paths)]


def build_entries(count: int, target: Path) -> None:
    """An archive of `count` tiny (8x8) slices, 500 to a study folder; reused when there."""
    if target.exists():
        return
    partial = target.with_suffix(".part")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for study in range(count // ENTRIES_PER_STUDY):
            ds = ct_dataset(
                rows=8, columns=8, pixels=np.zeros((8, 8), np.int16),
                study_uid=generate_uid(), series_uid=generate_uid(),
                sop_instance_uid=UID_PLACEHOLDER, patient_id=f"P{study:05d}",
            )
            buffer = io.BytesIO()
            dcmwrite(buffer, ds, enforce_file_format=True)
            template = buffer.getvalue()
            for index in range(ENTRIES_PER_STUDY):
                uid = f"{UID_PLACEHOLDER[:-30]}{study:015d}{index:015d}"
                archive.writestr(
                    f"patient_{study:05d}/series_1/IMG_{index:04d}.dcm",
                    template.replace(UID_PLACEHOLDER.encode(), uid.encode()),
                )
    partial.rename(target)


def post(service: Gunicorn, archive: Path) -> float:
    """curl time_total of one bulk run; fails unless 201."""
    result = curl(service.url + "/api/bulk-runs", "-F", f"file=@{archive}")
    assert result.status == 201, (result.status, result.body[:300])
    return result.seconds


def versus_unzip(
    name: str, archive: Path, root: Path, env: dict, port: int, repeat: int, both_levels: bool,
    target: float,
) -> Case:
    """Interleave unzip (one or both levels) and the bulk run; median ratio, worker VmHWM."""
    unzip, service_times = [], []
    with Gunicorn("wsgi:app", port, env, root / f"svc_{name}.log") as service:
        worker = service.worker_pid()
        for _ in range(repeat):
            outer, inner = time_unzip(archive, root / "unzipped")
            unzip.append(outer + inner if both_levels else outer)
            service_times.append(post(service, archive))
        hwm = proc_status(worker)["VmHWM"] / 1024
    ratio = median(service_times) / median(unzip)
    label = "unzip of both levels" if both_levels else "unzip"
    case = Case(name, ratio, f"<= {target}", hwm)
    case.notes = [
        f"{label}: median {median(unzip):.2f} s, {spread(unzip)}",
        f"service: median {median(service_times):.2f} s, {spread(service_times)}",
    ]
    return case


def receive(root: Path, env: dict, port: int, repeat: int) -> Case:
    """Throughput of the bulk receive path against a bare WSGI reader, same body, same run."""
    body = root / "noise.zip"
    if not body.exists():
        with body.open("wb") as out:
            for _ in range(RECEIVE_MIB):
                out.write(os.urandom(MIB))
    size = body.stat().st_size
    times: dict[str, list[float]] = {"medscan": [], "bare": []}
    bare = Gunicorn(
        "upload:bare_app",
        port + 1,
        {"GUNICORN_WORKERS": "1"},
        root / "bare.log",
        extra_args=("--pythonpath", str(REPO / "bench")),
    )
    with Gunicorn("wsgi:app", port, env, root / "svc_receive.log") as service, bare:
        for _ in range(repeat):
            result = curl(service.url + "/api/bulk-runs", "-F", f"file=@{body}")
            assert result.status == 400 and b"Only .zip" in result.body, result
            times["medscan"].append(result.seconds)
            result = curl(bare.url + "/", "-F", f"file=@{body}")
            assert result.status == 200, result
            times["bare"].append(result.seconds)
    speed = {name: size / MIB / median(values) for name, values in times.items()}
    case = Case("receive", speed["medscan"] / speed["bare"], ">= 0.5")
    case.notes = [
        f"{name}: {speed[name]:.0f} MiB/s, {spread(values)}" for name, values in times.items()
    ]
    return case


def headers(root: Path, repeat: int) -> Case:
    """``read_instance`` against a bare ``dcmread(stop_before_pixels=True)``, ms per file."""
    folder = root / "slices"
    if not folder.exists():
        folder.mkdir()
        for name, data in study_slices(flat_specs()[0]):
            (folder / Path(name).name).write_bytes(data)
    paths = sorted(folder.iterdir())
    for path in paths:  # both timings then read from the page cache
        path.read_bytes()
    times: dict[str, list[float]] = {"read_instance": [], "dcmread": []}
    for _ in range(repeat):
        started = time.perf_counter()
        for path in paths:
            read_instance(path)
        times["read_instance"].append((time.perf_counter() - started) / len(paths) * 1000)
        started = time.perf_counter()
        for path in paths:
            dcmread(path, stop_before_pixels=True)
        times["dcmread"].append((time.perf_counter() - started) / len(paths) * 1000)
    ours = median(times["read_instance"])
    case = Case("headers", ours / median(times["dcmread"]), "<= 0.6 ms per file: see notes")
    case.notes = [f"{name}: {median(v):.3f} ms/file, {spread(v)}" for name, v in times.items()]
    return case


def entries(root: Path, env: dict, port: int, repeat: int) -> Case:
    """10k and 100k tiny entries, each in a fresh worker: time ratio and peak RSS."""
    seconds, peaks = {}, {}
    for count in (10_000, 100_000):
        archive = root / f"entries_{count}.zip"
        build_entries(count, archive)
        with Gunicorn("wsgi:app", port, env, root / f"svc_entries_{count}.log") as service:
            worker = service.worker_pid()
            runs = [post(service, archive) for _ in range(repeat if count == 10_000 else 1)]
            seconds[count] = median(runs)
            peaks[count] = proc_status(worker)["VmHWM"] / 1024
    case = Case("entries", seconds[100_000] / seconds[10_000], "~10 (linear)", peaks[100_000])
    case.notes = [
        f"{count} entries: {seconds[count]:.2f} s, worker VmHWM {peaks[count]:.0f} MiB"
        for count in seconds
    ]
    return case


def run_floor(
    root: Path, db_url: str, port: int, repeat: int, nested_studies: int, with_entries: bool
) -> None:
    """Every case above; print the ratios against the issue's targets."""
    env = service_env(db_url, root / "svc")
    flat = root / "flat_300.zip"
    nested = root / f"nested_{nested_studies}x{NESTED_SLICES}.zip"
    started = time.perf_counter()
    build_specs(flat_specs(), flat)
    build_specs(nested_specs(nested_studies), nested)
    print(f"data: {flat.name} {flat.stat().st_size / MIB:.0f} MiB, {nested.name} "
          f"{nested.stat().st_size / MIB:.0f} MiB (ready in {time.perf_counter() - started:.0f} s)")
    cases = [
        headers(root, repeat),
        versus_unzip("flat", flat, root, env, port, repeat, False, 0.45),
        versus_unzip("nested", nested, root, env, port + 1, repeat, True, 0.35),
        receive(root, env, port + 2, repeat),
    ]
    if with_entries:
        cases.append(entries(root, env, port + 4, repeat))
    print("\n== issue 16 ratios (same run)")
    for case in cases:
        print(case.line())
        for note in case.notes:
            print(f"    {note}")
    shutil.rmtree(root / "svc", ignore_errors=True)
