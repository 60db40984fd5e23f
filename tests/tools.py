"""External tools of the tests: when one is missing the test skips (fails in CI, see need)."""

from __future__ import annotations

import os
import shutil

import pytest


def need(available: bool, what: str) -> None:
    """Skip the test unless ``what`` is available; fail instead under MEDSCAN_REQUIRE_TOOLS=1."""
    if available:
        return
    if os.environ.get("MEDSCAN_REQUIRE_TOOLS") == "1":
        pytest.fail(f"{what} is required (MEDSCAN_REQUIRE_TOOLS=1)")
    pytest.skip(f"{what} is not available")


def require_tool(name: str) -> str:
    """The path of the command ``name`` (see `need`)."""
    found = shutil.which(name)
    need(found is not None, f"the command {name}")
    return found  # type: ignore[return-value]
