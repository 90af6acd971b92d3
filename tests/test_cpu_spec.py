"""Calibrated CPU specs: written by validation, read strictly by the loader."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from sim.errors import InputError
from sim.spec_library import load_spec, load_spec_file
from tests.cpu_fixtures import TOY_CAL
from validation.cpu_spec_file import quantity, write_calibrated_spec

DATA = Path(__file__).parent / "data"
COMMITTED = Path(__file__).parent.parent / "hw_specs" / "calibrated" / "amd-epyc-zen5-1t.yaml"


def _toy_cal_for(spec):
    levels = tuple(dataclasses.replace(lv, name=name)
                   for lv, name in zip(TOY_CAL.levels, [m.name for m in spec.memory],
                                       strict=True))
    return dataclasses.replace(TOY_CAL, levels=levels, datasheet="toy-cpu", gather_fraction=0.3,
                               gather_ramp_bytes=4096.0)


def test_quantity_keeps_four_significant_digits():
    assert quantity(7.1234e-7, "s") == "712.3 ns"
    assert quantity(41.26e9, "B/s") == "41.26 GB/s"
    assert quantity(12 * 2**20, "B") == "12 MiB"


def test_calibrated_spec_round_trips_through_the_loader(tmp_path, toy_cpu):
    cal = _toy_cal_for(toy_cpu)
    path = write_calibrated_spec(tmp_path / "toy-1t.yaml", toy_cpu, cal, name="toy-cpu-1t",
                                 provenance="test fixture")
    spec = load_spec(str(path))
    assert spec.name == "toy-cpu-1t" and spec.compute.num_units == 1
    assert spec.memory[0].capacity_bytes == toy_cpu.memory[0].capacity_bytes / 4  # per core
    assert spec.host.dispatch_s == pytest.approx(1e-6)
    got = spec.cpu_calibration
    assert got.datasheet == "toy-cpu" and got.threads == 1
    for name in vars(cal.gemm["fp32"]):
        assert getattr(got.gemm["fp32"], name) == pytest.approx(
            getattr(cal.gemm["fp32"], name), rel=1e-3)
    assert [lv.bandwidth_bytes_per_s for lv in got.levels] == pytest.approx(
        [lv.bandwidth_bytes_per_s for lv in cal.levels], rel=1e-3)
    assert got.element_s == pytest.approx(cal.element_s, rel=1e-3)
    assert got.intervals["gemm"] == cal.intervals["gemm"]
    assert (got.gather_fraction, got.gather_ramp_bytes) == (0.3, 4096.0)
    with pytest.raises(InputError, match="between 1 and 1"):
        spec.with_units(2)  # it models one thread, not the datasheet's four cores


def _written(tmp_path, toy_cpu) -> dict:
    path = write_calibrated_spec(tmp_path / "toy.yaml", toy_cpu, _toy_cal_for(toy_cpu),
                                 name="toy-cpu-1t", provenance="test fixture")
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["cpu_calibration"].update(bogus=1), "cpu_calibration.bogus: unknown field"),
    (lambda d: d["cpu_calibration"].pop("dispatch"), "cpu_calibration.dispatch: missing"),
    (lambda d: d["cpu_calibration"]["memory"].pop(), "must list levels of the spec"),
    (lambda d: d["cpu_calibration"]["floor"].update(gemm="1 us"), "unknown category"),
    (lambda d: d["cpu_calibration"]["gemm"]["fp32"].update(rate="1 GB/s"), "FLOP/s"),
    (lambda d: d["cpu_calibration"]["intervals"]["gemm"].update(low=2.0), "must be >= low"),
    (lambda d: d.update(kind="gpu"), "only a cpu spec"),
    (lambda d: d["cpu_calibration"].update(gather_ramp="-4 KiB"), "gather_ramp: must be > 0"),
])
def test_calibration_section_is_read_strictly(tmp_path, toy_cpu, edit, message):
    data = _written(tmp_path, toy_cpu)
    edit(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match=message):
        load_spec_file(path)


def test_a_spec_written_before_the_optional_gemm_keys_loads_with_their_defaults(tmp_path,
                                                                               toy_cpu):
    data = _written(tmp_path, toy_cpu)
    gemm = data["cpu_calibration"]["gemm"]["fp32"]
    for key in ("cold_call", "gemv_stream_fraction", "dram_call"):
        gemm.pop(key)
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(data))
    coef = load_spec_file(path).cpu_calibration.gemm["fp32"]
    assert coef.cold_call_s == 0.0 and coef.dram_call_s == 0.0
    assert coef.gemv_stream_fraction == coef.stream_fraction


def test_the_committed_calibrated_spec_loads():
    spec = load_spec(str(COMMITTED))
    cal = spec.cpu_calibration
    assert spec.kind == "cpu" and cal.threads == spec.compute.num_units == 1
    assert cal.datasheet == "amd-epyc-zen5"
    assert {"gemm", "attention", "elementwise", "all"} <= set(cal.intervals)
    assert "calibration" in spec.sources


def test_a_spec_without_a_gather_ramp_misses_on_whole_rows(tmp_path, toy_cpu):
    data = _written(tmp_path, toy_cpu)
    data["cpu_calibration"].pop("gather_ramp")
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(data))
    assert load_spec_file(path).cpu_calibration.gather_ramp_bytes == float("inf")
