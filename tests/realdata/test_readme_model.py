"""The example model of README.md's "The model interface" section, run as written there."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from medscan.analyzer import analyze_files, load_model
from tests.realdata.samples import SLICES

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## The model interface"


@pytest.fixture
def example(tmp_path, monkeypatch) -> Path:
    """README's example model, written to density_model.py on sys.path."""
    section = README.read_text(encoding="utf-8").split(SECTION, 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    path = tmp_path / "density_model.py"
    path.write_text(code, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield path
    sys.modules.pop("density_model", None)


def test_readme_model_reads_volume_and_spacing(example, classic) -> None:
    model = importlib.import_module("density_model").DensityModel()
    analysis = analyze_files(classic, path_to_study="study", model=model, threshold=0.5)
    assert analysis.ok, analysis.error
    extras = analysis.result["extras"]
    assert extras["model"] == "density" and extras["images"] == SLICES
    assert extras["lung_ml"] > 0 and 0 <= extras["laa950"] <= 1


def test_readme_model_loads_by_spec_and_runs_as_a_script(example, classic) -> None:
    assert load_model("density_model:DensityModel").name == "density"
    folder = classic[0].parent
    root = README.parent
    done = subprocess.run(
        [sys.executable, str(example), str(folder)], cwd=root, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "'processing_status': 'Success'" in done.stdout and "laa950" in done.stdout
