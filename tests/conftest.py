"""Shared fixtures: the round-number toy devices in tests/data, loaded by path."""

from __future__ import annotations

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
