"""``medscan ...`` (or ``flask --app wsgi medscan ...``): tools that need no server.

``medscan bulk`` runs the bulk pipeline offline over archives and folders of them;
``medscan check-storage`` compares scan rows with stored files.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup, ScriptInfo

from medscan.analysis import current_model, unpack_limits
from medscan.bulk.report_files import csv_lines, write_xlsx
from medscan.bulk.runs import about_sheet, build_run, error_lines, report_rows
from medscan.bulk.studies import BulkResult, process_archive
from medscan.models import BulkRun, utcnow
from medscan.queue import worker_command
from medscan.safezip import ArchiveError, Skipped
from medscan.storage import ScanStorage, check_storage
from medscan.workspace import work_dir

medscan_cli = AppGroup("medscan", help="medscan tools that need no server.")
# The About sheet's cell holds at most 32,767 characters; a run over many archives names them all.
MAX_FILE_NAME = 32_000


def write_report(output: Path, run: BulkRun) -> None:
    """Write the run's XLSX or CSV report (by ``output``'s suffix) atomically."""
    fd, temp_name = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}-")
    rows = report_rows(item.report for item in run.items)
    try:
        with os.fdopen(fd, "w+b") as handle:
            if output.suffix.lower() == ".csv":
                handle.writelines(line.encode() for line in csv_lines(rows))
            else:
                failures = ((i.report, i.error) for i in run.items if i.error is not None)
                skipped = ((s.path, s.reason) for s in run.skipped_files)
                write_xlsx(handle, rows, error_lines(failures, skipped), about_sheet(run))
        os.replace(temp_name, output)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int], None]]:
    """A ``progress(done, total)`` callback that draws a bar on stderr once the total is known."""
    with ExitStack() as bars:
        bar = None

        def progress(done: int, total: int) -> None:
            nonlocal bar
            if bar is None:
                bar = bars.enter_context(
                    click.progressbar(length=total, label=label, file=sys.stderr)
                )
            bar.update(done - bar.pos)

        yield progress


def archives_of(paths: tuple[Path, ...]) -> list[Path]:
    """The archives named: files as given, and the ``*.zip`` files directly in each folder."""
    archives: list[Path] = []
    for path in paths:
        if not path.is_dir():
            archives.append(path)
            continue
        found = sorted(p for p in path.iterdir() if p.suffix.lower() == ".zip" and p.is_file())
        if not found:
            raise click.BadParameter(f"no .zip archives in folder {str(path)!r}")
        archives += found
    names = [archive.name for archive in archives]
    if len(set(names)) < len(names):
        twice = sorted({name for name in names if names.count(name) > 1})
        raise click.BadParameter(f"two archives share a name: {', '.join(twice)}")
    return archives


def in_archive(result: BulkResult, name: str) -> BulkResult:
    """The result with every study and skipped path prefixed by the archive's name."""
    return BulkResult(
        rows=[
            replace(
                row,
                report=replace(row.report, path_to_study=f"{name}/{row.report.path_to_study}"),
            )
            for row in result.rows
        ],
        skipped=[replace(skip, path=f"{name}/{skip.path}") for skip in result.skipped],
    )


@medscan_cli.command("bulk")
@click.argument(
    "archives",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, path_type=Path),
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The report to write: a .xlsx or .csv file.",
)
def bulk_command(archives: tuple[Path, ...], output: Path) -> None:
    """Analyse every study in ARCHIVES and write one triage report.

    ARCHIVES are ZIP files and folders of them (the *.zip files directly inside). With more
    than one archive, each report path starts with its archive's name. An archive that cannot
    be unpacked is named on stderr and on the XLSX Errors sheet; the exit status is then 1, and
    no report is written when no archive could be read.
    """
    if output.suffix.lower() not in (".xlsx", ".csv"):
        raise click.BadParameter("must end in .xlsx or .csv", param_hint="--output")
    # Checked before the analysis, which can take hours: the report must have somewhere to go.
    folder = output.parent
    if not folder.is_dir():
        raise click.BadParameter(f"folder {str(folder)!r} does not exist", param_hint="--output")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise click.BadParameter(f"folder {str(folder)!r} is not writable", param_hint="--output")
    paths = archives_of(archives)
    model = current_model()
    threshold = current_app.config["MEDSCAN_THRESHOLD"]
    created_at = utcnow()
    combined = BulkResult(rows=[], skipped=[])
    unreadable: list[str] = []
    for archive in paths:
        try:
            with (
                progress_bar(archive.name) as progress,
                work_dir(Path(current_app.config["MEDSCAN_WORK_DIR"])) as work,
            ):
                result = process_archive(
                    archive,
                    work,
                    archive_name=archive.name,
                    limits=unpack_limits(),
                    model=model,
                    threshold=threshold,
                    progress=progress,
                )
        except ArchiveError as exc:
            click.echo(f"{archive}: {exc}", err=True)
            unreadable.append(archive.name)
            combined.skipped.append(Skipped(archive.name, str(exc)))
            continue
        if len(paths) > 1:
            result = in_archive(result, archive.name)
        combined.rows.extend(result.rows)
        combined.skipped.extend(result.skipped)
    if len(unreadable) == len(paths):
        raise click.ClickException("no archive could be read")
    run = build_run(
        combined,
        file_name=", ".join(archive.name for archive in paths)[:MAX_FILE_NAME],
        created_at=created_at,
        model=model,
        threshold=threshold,
    )
    try:
        write_report(output, run)
    except OSError as exc:  # a full disk, say: the partial file is already gone
        raise click.ClickException(f"cannot write {output}: {exc.strerror}") from exc
    click.echo(f"{output}: {run.studies} studies, {run.failed} failed, {run.skipped} skipped files")
    if unreadable:
        raise click.ClickException(f"{len(unreadable)} of {len(paths)} archives could not be read")


@medscan_cli.command("check-storage")
@click.option(
    "--repair",
    is_flag=True,
    help="Complete interrupted deletions and remove stored files that no scan row names.",
)
@click.option(
    "--grace",
    type=click.IntRange(min=0),
    default=None,
    help="Leave files younger than this many seconds (default MEDSCAN_ORPHAN_GRACE_S): an "
    "upload may be about to commit their row.",
)
def check_storage_command(repair: bool, grace: int | None) -> None:
    """List scan rows without files and stored files without rows (exit 1 if any remain).

    A row whose file is gone is data loss: it is listed, never deleted; restore the file from
    a backup, or delete the scan through the API once the loss is accepted.
    """
    storage = ScanStorage(current_app.config["MEDSCAN_STORAGE_DIR"])
    grace_s = current_app.config["MEDSCAN_ORPHAN_GRACE_S"] if grace is None else grace
    check = check_storage(storage, repair=repair, grace_s=grace_s)
    for scan_id in check.missing:
        click.echo(f"row without file: scan {scan_id} (expected at {storage.path(scan_id)})")
    for path in check.orphans:
        click.echo(f"file without row: {path}")
    click.echo(
        f"{len(check.missing)} rows without files, {len(check.orphans)} files without rows "
        f"({check.orphans_removed} removed, {check.recent_orphans} younger than {grace_s} s), "
        f"interrupted deletions: {check.deletions_completed} completed, "
        f"{check.pending_deletions} pending"
    )
    if check.missing:
        click.echo(f"DATA LOSS: {len(check.missing)} scans have no stored file", err=True)
    if not check.clean:
        sys.exit(1)


medscan_cli.add_command(worker_command)


def register_cli(app: Flask) -> None:
    """Add ``flask medscan ...``."""
    app.cli.add_command(medscan_cli)


def main() -> None:
    """The ``medscan`` console script: the same commands, on the app built from the environment."""
    from medscan.app import create_app

    medscan_cli.main(prog_name="medscan", obj=ScriptInfo(create_app=create_app))
