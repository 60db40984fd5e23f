"""``flask --app wsgi medscan ...``: the bulk pipeline offline, for a folder of archives."""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from medscan.analysis import current_model, unpack_limits
from medscan.bulk.archive import ArchiveError, work_dir
from medscan.bulk.report_files import csv_lines, write_xlsx
from medscan.bulk.runs import about, build_run, error_lines, report_rows
from medscan.bulk.studies import process_archive
from medscan.models import BulkRun, utcnow
from medscan.queue import worker_command
from medscan.storage import ScanStorage, check_storage

medscan_cli = AppGroup("medscan", help="medscan tools that need no server.")


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
                write_xlsx(handle, rows, error_lines(failures, skipped), about(run))
        os.replace(temp_name, output)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


@medscan_cli.command("bulk")
@click.argument("archive", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The report to write: a .xlsx or .csv file.",
)
def bulk_command(archive: Path, output: Path) -> None:
    """Analyse every study in ARCHIVE (a ZIP) and write the triage report."""
    if output.suffix.lower() not in (".xlsx", ".csv"):
        raise click.BadParameter("must end in .xlsx or .csv", param_hint="--output")
    # Checked before the analysis, which can take hours: the report must have somewhere to go.
    folder = output.parent
    if not folder.is_dir():
        raise click.BadParameter(f"folder {str(folder)!r} does not exist", param_hint="--output")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise click.BadParameter(f"folder {str(folder)!r} is not writable", param_hint="--output")
    model = current_model()
    threshold = current_app.config["MEDSCAN_THRESHOLD"]
    created_at = utcnow()
    bars = ExitStack()
    bar = None

    click.echo(f"{archive.name}: unpacking (progress: done 0, total not known yet)", err=True)

    def progress(done: int, total: int) -> None:  # the API's progress {done, total}
        nonlocal bar
        if bar is None:  # the total is known once the archive is unpacked
            bar = bars.enter_context(
                click.progressbar(length=total, label="Studies", show_pos=True, file=sys.stderr)
            )
        bar.update(done - bar.pos)

    try:
        with bars, work_dir(Path(current_app.config["MEDSCAN_WORK_DIR"])) as folder:
            result = process_archive(
                archive,
                folder,
                archive_name=archive.name,
                limits=unpack_limits(),
                model=model,
                threshold=threshold,
                progress=progress,
            )
    except ArchiveError as exc:
        raise click.ClickException(str(exc)) from exc
    run = build_run(
        result, file_name=archive.name, created_at=created_at, model=model, threshold=threshold
    )
    try:
        write_report(output, run)
    except OSError as exc:  # a full disk, say: the partial file is already gone
        raise click.ClickException(f"cannot write {output}: {exc.strerror}") from exc
    click.echo(f"{output}: {run.studies} studies, {run.failed} failed, {run.skipped} skipped files")


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
