"""medscan against Orthanc on the same flat ZIP: time and peak RSS, with ``unzip``, in one run.

    PYTHONPATH=. python bench/orthanc.py [--repeat 3]

Installs Debian's ``orthanc`` package if ``Orthanc`` is missing (its service is kept from
starting), then runs Orthanc on loopback only (``RemoteAccessAllowed`` false,
``DicomServerEnabled`` false, storage and SQLite index in a temp folder) and medscan under
gunicorn (1 worker, shipped settings). Interleaved, --repeat times: ``unzip -qo`` of the ZIP,
the medscan bulk run (curl ``POST /api/bulk-runs``), Orthanc's import of the same ZIP (curl
``POST /instances``), after which every patient is deleted from Orthanc. Prints the medians,
Orthanc / medscan (target >= 3.5), both against unzip, and both processes' VmHWM.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import common
from bulk import build_specs, time_unzip
from common import MIB, Gunicorn, curl, median, proc_status, service_env, spread
from floor import flat_specs, post

POLICY_RC = Path("/usr/sbin/policy-rc.d")


def ensure_orthanc() -> str:
    """The path of ``Orthanc``, installed from Debian's package when missing (not started)."""
    found = shutil.which("Orthanc")
    if found:
        return found
    made_policy = not POLICY_RC.exists()
    if made_policy:  # tells the package scripts not to start the service (exit 101)
        POLICY_RC.write_text("#!/bin/sh\nexit 101\n")
        POLICY_RC.chmod(0o755)
    try:
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "orthanc"],
                       check=True, stdout=subprocess.DEVNULL)
    finally:
        if made_policy:
            POLICY_RC.unlink()
    return shutil.which("Orthanc") or "/usr/sbin/Orthanc"


class Orthanc:
    """Orthanc on 127.0.0.1:``port`` with its storage and index under ``folder``."""

    def __init__(self, binary: str, folder: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        config = {
            "Name": "medscan-bench",
            "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "index"),
            "HttpPort": port,
            "HttpServerEnabled": True,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomServerEnabled": False,
            "Plugins": [],
        }
        self.config = folder / "orthanc.json"
        self.config.write_text(json.dumps(config))
        self.log = folder / "orthanc.log"
        self.binary = binary
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Orthanc:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen([self.binary, str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/system", timeout=2).close()
                return self
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"Orthanc exited, see {self.log}") from None
                time.sleep(0.2)
        raise RuntimeError("Orthanc did not answer")

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(timeout=60)

    def post_zip(self, archive: Path) -> float:
        """curl time_total of ``POST /instances`` with the ZIP; fails unless it is 200."""
        result = curl(self.url + "/instances", "-X", "POST", "-H", "Expect:",
                      "--data-binary", f"@{archive}")
        assert result.status == 200, (result.status, result.body[:300])
        return result.seconds

    def delete_all(self) -> None:
        """Delete every patient (and so every file) Orthanc holds."""
        for patient in json.loads(curl(self.url + "/patients").body):
            assert curl(f"{self.url}/patients/{patient}", "-X", "DELETE").status == 200

    def instances(self) -> int:
        """How many instances Orthanc holds."""
        return len(json.loads(curl(self.url + "/instances").body))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/medscan_bench_io/orthanc"))
    parser.add_argument("--port", type=int, default=8771, help="medscan; +1 Orthanc")
    parser.add_argument("--db-name", default="medscan_bench_io")
    args = parser.parse_args()

    binary = ensure_orthanc()
    root: Path = args.data_dir
    root.mkdir(parents=True, exist_ok=True)
    common.same_disk(root, common.REPO)
    try:
        archive = root / "flat_300.zip"
        specs = build_specs(flat_specs(), archive)
        slices = sum(spec.slices for spec in specs)
        print(f"{archive.name}: {archive.stat().st_size / MIB:.0f} MiB, {slices} slices")
        times: dict[str, list[float]] = {"unzip": [], "medscan": [], "orthanc": []}
        with (
            common.database(args.db_name) as db_url,
            Gunicorn("wsgi:app", args.port, service_env(db_url, root / "svc"),
                     root / "svc.log") as service,
            tempfile.TemporaryDirectory(dir=root) as folder,
            Orthanc(binary, Path(folder), args.port + 1) as orthanc,
        ):
            worker = service.worker_pid()
            for _ in range(args.repeat):
                outer, _ = time_unzip(archive, root / "unzipped")
                times["unzip"].append(outer)
                times["medscan"].append(post(service, archive))
                times["orthanc"].append(orthanc.post_zip(archive))
                assert orthanc.instances() == slices
                orthanc.delete_all()
            hwm = {
                "medscan": proc_status(worker)["VmHWM"] / 1024,
                "orthanc": proc_status(orthanc.process.pid)["VmHWM"] / 1024,  # type: ignore[union-attr]
            }
        for name, values in times.items():
            print(f"{name:8s} median {median(values):6.2f} s  {spread(values)}")
        unzip = median(times["unzip"])
        print(f"orthanc / medscan {median(times['orthanc']) / median(times['medscan']):.2f} "
              f"(target >= 3.5); medscan / unzip {median(times['medscan']) / unzip:.2f}; "
              f"orthanc / unzip {median(times['orthanc']) / unzip:.2f}")
        print(f"peak RSS: medscan worker {hwm['medscan']:.0f} MiB, "
              f"Orthanc {hwm['orthanc']:.0f} MiB")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
