"""Error metrics on hand-computed samples."""

from __future__ import annotations

import pytest

from validation import ape, summarize_errors


def test_ape_and_summary():
    predicted, measured = [1.1, 0.8, 2.0, 3.0], [1.0, 1.0, 2.0, 2.0]
    assert ape(predicted, measured).tolist() == pytest.approx([0.1, 0.2, 0.0, 0.5])
    s = summarize_errors(predicted, measured)
    assert s.count == 4
    assert s.median_ape == pytest.approx(0.15)
    assert s.mean_ape == pytest.approx(0.2)
    assert s.p90_ape == pytest.approx(0.41)  # numpy linear interpolation between 0.2 and 0.5
    assert s.bias == pytest.approx(0.05)  # median of (+0.1, -0.2, 0, +0.5)


def test_rejects_bad_measurements():
    with pytest.raises(ValueError):
        ape([1.0], [0.0])
    with pytest.raises(ValueError):
        ape([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        summarize_errors([], [])
