"""A paired comparison of calibrated CPU specs: one timing of the held-out points and models,
priced by every spec."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sim.cli import main
from sim.errors import InputError
from sim.spec_library import load_spec
from validation.cpu_compare import compare_cpu, compare_markdown

COMMITTED = Path(__file__).parent.parent / "hw_specs" / "calibrated" / "amd-epyc-zen5-1t.yaml"


def _with_framework(tmp_path: Path, framework_us: float) -> Path:
    """The committed spec with another framework term (model Python per call) and no host
    profile model, so that the framework term prices every trace."""
    text = re.sub(r"(?m)^  framework: .*$", f"  framework: {framework_us} us",
                  COMMITTED.read_text())
    text = re.sub(r"(?m)^  host_profile:\n(    .*\n)+", "", text)
    path = tmp_path / f"framework-{framework_us}.yaml"
    path.write_text(text)
    assert load_spec(str(path)).cpu_calibration.host_profile is None
    return path


def test_specs_are_priced_on_the_same_measurements(tmp_path):
    # the framework term prices a model's Python, never a micro-benchmark: the kernel columns
    # must agree exactly, the model errors differ by exactly the extra term over the wall
    base = load_spec(str(COMMITTED)).cpu_calibration.framework_s
    same = _with_framework(tmp_path, round(base * 1e6, 3))
    other = _with_framework(tmp_path, round(base * 1e6 + 1.0, 3))
    results = compare_cpu([str(same), str(other)], quick=True, progress=False,
                          models=[("gpt2-tiny", "prefill", 64)])
    assert results["specs"][0] != "" and len(results["categories"]) >= 5
    for category in results["categories"]:
        first, second = category["specs"]
        assert first == second, category["category"]
    (model,) = results["models"]
    t_first, t_second = model["calibrated_s"]
    assert t_second > t_first
    extra = (load_spec(str(other)).cpu_calibration.framework_s
             - load_spec(str(same)).cpu_calibration.framework_s)
    calls = (t_second - t_first) / extra
    assert calls == pytest.approx(round(calls), abs=1e-6) and calls > 10  # whole calls
    assert model["errors"][1] - model["errors"][0] == pytest.approx(
        (t_second - t_first) / model["measured_s"])
    assert len(model["measured_walls_s"]) == 3
    table = compare_markdown(results)
    assert "gpt2-tiny prefill" in table and table.count("\n") == 2 + len(
        results["categories"]) + 1
    assert f"| {same.name} | {other.name} |" in table  # one CPU's specs share a name


def test_a_comparison_needs_two_calibrated_specs_of_one_cpu():
    with pytest.raises(InputError, match="at least two"):
        compare_cpu([str(COMMITTED)], progress=False)
    with pytest.raises(InputError, match="no CPU calibration"):
        compare_cpu([str(COMMITTED), "amd-epyc-zen5"], progress=False)


def test_cli_compare_refuses_an_html_report(tmp_path, capsys):
    code = main(["validate", "--hw", str(COMMITTED), "--hw", str(COMMITTED), "--html",
                 str(tmp_path / "r.html")])
    err = capsys.readouterr().err
    assert code == 2 and "--html" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r.html").exists()
