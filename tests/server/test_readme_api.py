"""The README's curl examples (API overview), run as written against a real gunicorn."""

from __future__ import annotations

import re
import subprocess
import zipfile
from pathlib import Path

from tests.dicom_factory import write_ct_file, write_ct_series
from tests.server.conftest import REPO
from tests.tools import require_tool


def readme_examples() -> str:
    """The shell block of the README's "API overview" section."""
    section = (REPO / "README.md").read_text().split("## API overview", 1)[1]
    return re.search(r"```bash\n(.*?)```", section, re.DOTALL).group(1)


def test_every_curl_example_works(start_server, tmp_path: Path):
    require_tool("curl")
    server = start_server()
    write_ct_file(tmp_path / "ct1.dcm")
    with zipfile.ZipFile(tmp_path / "batch.zip", "w") as archive:
        for path in write_ct_series(tmp_path / "series", n_slices=2):
            archive.write(path, f"study/{path.name}")
    script = readme_examples().replace(
        "API=http://127.0.0.1:5000", f"API=http://127.0.0.1:{server.port}"
    )
    assert script.count("curl ") >= 15
    # Every call must succeed (an HTML 400 for a raw UTF-8 query once did not).
    fail_on_error = 'curl() { command curl --fail-with-body --show-error "$@"; }\n'
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", fail_on_error + script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    answers = run.stdout.splitlines()
    searched = next(line for line in answers if '"items"' in line)
    assert '"last_name":"Семёнов"' in searched.replace(" ", "")  # found by "семенов"
    assert (tmp_path / "copy.dcm").read_bytes() == (tmp_path / "ct1.dcm").read_bytes()
    assert len(list(tmp_path.glob("bulk_report_*.xlsx"))) == 1
    assert len(list(tmp_path.glob("bulk_report_*.csv"))) == 1
