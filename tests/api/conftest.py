"""Fixtures of the API tests."""

from __future__ import annotations

import pytest

from tests.dicom_factory import write_ct_file
from tests.helpers import create_patient


@pytest.fixture
def patient_id(client) -> str:
    """A patient created through the API."""
    return create_patient(client)


@pytest.fixture
def ct_bytes(tmp_path) -> bytes:
    """A small CT DICOM file."""
    return write_ct_file(tmp_path / "ct.dcm", rows=32, columns=32).read_bytes()
