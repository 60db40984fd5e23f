"""Fixtures of the real-data tests: the classic series and what other tools make of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.realdata.recording import RecordingModel
from tests.realdata.samples import write_classic_series, write_legacy_enhanced


@pytest.fixture(scope="session")
def classic(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The classic series' files, in slice order (their names are shuffled)."""
    return write_classic_series(tmp_path_factory.mktemp("classic"))


@pytest.fixture(scope="session")
def enhanced(classic: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The classic series as one highdicom Legacy Converted Enhanced CT instance."""
    return write_legacy_enhanced(classic, tmp_path_factory.mktemp("enhanced") / "enhanced.dcm")


@pytest.fixture(autouse=True)
def recording() -> list:
    """What the recording model received during the test (emptied before each test)."""
    RecordingModel.received.clear()
    return RecordingModel.received
