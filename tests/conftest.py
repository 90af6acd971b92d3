"""Shared fixtures: the round-number toy devices in tests/data, loaded by path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sim.spec_library import load_spec_file

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def toy_gpu():
    return load_spec_file(DATA / "toy-gpu.yaml")


@pytest.fixture(scope="session")
def toy_cpu():
    return load_spec_file(DATA / "toy-cpu.yaml")


def check_golden(name: str, text: str) -> None:
    """Compare ``text`` with tests/golden/NAME; TKSIM_UPDATE_GOLDEN=1 rewrites the file."""
    path = Path(__file__).parent / "golden" / name
    if os.environ.get("TKSIM_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()
