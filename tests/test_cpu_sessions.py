"""Several timings of the suite fitted as one: each point's median over the sessions."""

from __future__ import annotations

import gzip

import pandas as pd
import pytest

from sim.errors import InputError
from validation.cpu_sessions import combine_suites, read_suite, suite_header


def _table(times: dict[str, float], block: int = 10) -> pd.DataFrame:
    return pd.DataFrame({"key": list(times), "split": "fit", "measured_s": list(times.values()),
                         "first_s": [2 * t for t in times.values()], "block": block})


def test_a_point_takes_its_median_over_the_sessions_that_timed_it():
    tables = [_table({"a": 1.0, "b": 10.0}), _table({"a": 3.0, "b": 30.0, "c": 5.0}),
              _table({"a": 2.0, "b": 50.0, "c": 7.0}, block=12)]
    out = combine_suites(tables).set_index("key")
    assert out["measured_s"].to_dict() == {"a": 2.0, "b": 30.0, "c": 6.0}
    assert out["first_s"].to_dict() == {"a": 4.0, "b": 60.0, "c": 12.0}
    assert out["sessions"].to_dict() == {"a": 3, "b": 3, "c": 2}
    assert set(out["block"]) == {12}  # the other columns: the last session's


def test_one_table_comes_back_as_it_is():
    table = _table({"a": 1.0})
    assert combine_suites([table])["measured_s"].tolist() == [1.0]
    combined = combine_suites([table, _table({"a": 3.0})])
    assert combine_suites([combined])["sessions"].tolist() == [2]


def test_suite_files_are_read_strictly(tmp_path):
    good = tmp_path / "suite.csv.gz"
    with gzip.open(good, "wt") as f:
        f.write("# tksim CPU micro-benchmark points\n# Measured at noon\n")
        _table({"a": 1.0}).assign(predicted_s=0.5).to_csv(f, index=False)
    assert "predicted_s" not in read_suite(good) and suite_header(good) == "Measured at noon"
    with pytest.raises(InputError, match="missing.csv"):
        read_suite(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,2\n")
    with pytest.raises(InputError, match="not a suite table"):
        read_suite(bad)
    twice = tmp_path / "twice.csv"
    pd.concat([_table({"a": 1.0}), _table({"a": 2.0})]).to_csv(twice, index=False)
    with pytest.raises(InputError, match="duplicate key 'a'"):
        read_suite(twice)
    with pytest.raises(InputError, match="no suite"):
        combine_suites([])
