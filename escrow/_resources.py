"""Package data: the JSON Schemas and the report templates.

In a wheel they live at ``escrow/schemas`` and ``escrow/reports`` (hatch
force-include); in a source checkout they are the top-level ``schemas/`` and
``reports/`` folders, which is where people edit them.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def data_dir(name: str) -> Path:
    """Path of the ``schemas`` or ``reports`` folder, in a wheel or a checkout."""
    packaged = Path(str(resources.files("escrow"))) / name
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parent.parent / name
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"escrow package data folder {name!r} is missing")
