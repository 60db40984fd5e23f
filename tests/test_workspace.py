"""Work folders: removed when done, and swept when their process is gone."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from medscan.workspace import owned_prefix, sweep_stale_work_dirs, work_dir


def test_work_dir_is_removed_on_exception(tmp_path: Path) -> None:
    base = tmp_path / "dest/work"
    with pytest.raises(RuntimeError), work_dir(base) as path:
        assert path.name.startswith(f"medscan-{os.getpid()}-")
        (path / "sub").mkdir()
        (path / "sub/file").write_bytes(b"x")
        raise RuntimeError("boom")
    assert list(base.iterdir()) == []


def test_sweep_removes_only_dead_owners(tmp_path: Path) -> None:
    base = tmp_path / "dest/work"
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    stale = base / f"medscan-{child.pid}-abc"
    (stale / "sub").mkdir(parents=True)
    live_parent = base / f"medscan-{os.getppid()}-def"
    unrelated = base / "other-1-x"
    for path in (live_parent, unrelated):
        path.mkdir()
    with work_dir(base) as mine:
        assert sweep_stale_work_dirs(base) == 1
        assert sorted(base.iterdir()) == sorted([live_parent, unrelated, mine])


def test_spooled_uploads_carry_the_owners_prefix(tmp_path: Path) -> None:
    from medscan.uploads import SpooledUpload

    upload = SpooledUpload(tmp_path)
    try:
        assert upload.path.name.startswith(f"medscan-{os.getpid()}-upload-")
        assert sweep_stale_work_dirs(tmp_path) == 0  # its owner, this process, is alive
    finally:
        upload.discard()
    assert owned_prefix("x-") == f"medscan-{os.getpid()}-x-"
