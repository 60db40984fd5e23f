"""medscan: chest-CT studies per patient, their analysis, and bulk triage reports.

``create_app`` is loaded on first use, so ``import medscan.analyzer`` does not import Flask.
"""

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    """``create_app``, imported on first use."""
    if name == "create_app":
        from medscan.app import create_app

        return create_app
    raise AttributeError(f"module 'medscan' has no attribute {name!r}")
