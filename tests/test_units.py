"""Quantity parsing: SI inside, decimal vs binary prefixes, wrong dimensions rejected."""

from __future__ import annotations

import pytest

from sim.units import Dimension, UnitError, format_quantity, parse_quantity


@pytest.mark.parametrize(("text", "dimension", "value"), [
    ("3.35 TB/s", Dimension.BANDWIDTH, 3.35e12),
    ("80 GB", Dimension.BYTES, 80e9),
    ("80 GiB", Dimension.BYTES, 80 * 2**30),
    ("50 MiB", Dimension.BYTES, 50 * 2**20),
    ("989.4 TFLOP/s", Dimension.FLOP_RATE, 989.4e12),
    ("1979 TOPS", Dimension.FLOP_RATE, 1979e12),
    ("1.98 GHz", Dimension.FREQUENCY, 1.98e9),
    ("5 us", Dimension.TIME, 5e-6),
    ("480 ns", Dimension.TIME, 480e-9),
    ("700 W", Dimension.POWER, 700.0),
    (132, Dimension.COUNT, 132.0),
    ("0.75", Dimension.RATIO, 0.75),
    (2.5e-6, Dimension.TIME, 2.5e-6),
])
def test_parse(text, dimension, value):
    assert parse_quantity(text, dimension) == pytest.approx(value)


@pytest.mark.parametrize(("text", "dimension"), [
    ("3.35 TB/s", Dimension.BYTES),  # a bandwidth where a capacity is expected
    ("80 GB", Dimension.BANDWIDTH),
    ("5 us", Dimension.FREQUENCY),
    ("fast", Dimension.TIME),
    ("5 furlongs", Dimension.TIME),
    ("12 W", Dimension.COUNT),
    (True, Dimension.COUNT),
    ([1], Dimension.COUNT),
])
def test_reject(text, dimension):
    with pytest.raises(UnitError):
        parse_quantity(text, dimension)


def test_format():
    assert format_quantity(3.35e12, "B/s") == "3.35 TB/s"
    assert format_quantity(1.5e-6, "s") == "1.5 us"
    assert format_quantity(0.0, "s") == "0 s"
