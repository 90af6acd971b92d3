"""Captures taken in a reference machine state (validation.machine_state), with a scripted
sentinel: which captures are kept, and when capturing stops."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from validation.machine_state import STATE_BAND, captures_in_state


def _scripted(sentinels: list[float]):
    """A capture whose wall counts up (1, 2, ... ms) and a sentinel reading ``sentinels``."""
    calls = {"capture": 0, "sentinel": 0}

    def capture():
        calls["capture"] += 1
        return SimpleNamespace(meta={"unrecorded_wall_s": calls["capture"] * 1e-3})

    def sentinel():
        calls["sentinel"] += 1
        return sentinels[calls["sentinel"] - 1]

    return capture, sentinel, calls


def test_captures_out_of_state_are_retaken_and_the_in_state_ones_kept_in_order():
    # reference 100 us; captures 1 and 3 ran while the sentinel read 130 us (30 % slow)
    readings = [100, 102, 130, 130, 98, 100, 130, 131, 101, 99]
    capture, sentinel, calls = _scripted([r * 1e-6 for r in readings])
    kept = captures_in_state(capture, 3, 100e-6, attempts=9, sentinel=sentinel)
    assert [c.wall_s for c in kept] == pytest.approx([1e-3, 3e-3, 5e-3])
    assert [c.state for c in kept] == pytest.approx([0.01, -0.01, 0.0])
    assert calls["capture"] == 5  # stops at the third capture in state


def test_short_of_attempts_the_captures_nearest_the_state_are_kept():
    readings = [150, 150, 120, 120, 140, 140, 112, 112]  # never within the band
    capture, sentinel, calls = _scripted([r * 1e-6 for r in readings])
    kept = captures_in_state(capture, 2, 100e-6, attempts=4, sentinel=sentinel)
    assert calls["capture"] == 4
    assert [c.wall_s for c in kept] == pytest.approx([2e-3, 4e-3])
    assert all(abs(c.state) > STATE_BAND for c in kept)


def test_without_a_reference_no_sentinel_runs_and_the_first_captures_are_kept():
    capture, sentinel, calls = _scripted([])
    kept = captures_in_state(capture, 2, None, attempts=6, sentinel=sentinel)
    assert [c.wall_s for c in kept] == pytest.approx([1e-3, 2e-3])
    assert calls == {"capture": 2, "sentinel": 0}
