"""Spec files: the shipped ones load and cite; malformed ones fail with file and field."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from sim.errors import InputError
from sim.hardware import parse_spec
from sim.spec_library import REPO_SPECS, list_specs, load_spec

DATA = Path(__file__).parent / "data"

REQUIRED_DEVICES = {
    "nvidia-a100-sxm4-80gb", "nvidia-h100-sxm5-80gb", "nvidia-h200-sxm-141gb", "nvidia-b200",
    "nvidia-l40s", "amd-mi300x", "intel-xeon-8480", "amd-epyc-zen5",
}


def test_shipped_specs_cover_the_required_devices():
    names = {s.name for s in list_specs()}
    assert names >= REQUIRED_DEVICES


@pytest.mark.parametrize("path", sorted(REPO_SPECS.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_spec_is_physical(path):
    spec = load_spec(str(path))
    assert spec.main_memory.capacity_bytes == max(m.capacity_bytes for m in spec.memory)
    assert all(0 < m.latency_s < 1e-5 for m in spec.memory)
    assert spec.compute.matrix_peak("fp32") > 0
    if spec.kind == "gpu":
        # matrix engines beat vector units for bf16 on every GPU here
        assert spec.compute.matrix_peak("bf16") > spec.compute.vector_peak("fp32")
    assert spec.sources and all(len(text) > 20 for text in spec.sources.values())


def test_datasheet_peaks_h100():
    h100 = load_spec("h100")
    assert h100.compute.matrix_peak("bf16") == pytest.approx(989.4e12)
    assert h100.main_memory.bandwidth_bytes_per_s == pytest.approx(3.35e12)
    assert h100.main_memory.capacity_bytes == pytest.approx(80e9)


def test_unknown_name_suggests_close_names():
    with pytest.raises(InputError, match="did you mean.*h100"):
        load_spec("h10")


def test_with_units_bounds(toy_cpu):
    with pytest.raises(InputError):
        toy_cpu.with_units(5)
    assert toy_cpu.with_units(2).compute.num_units == 2


def _toy():
    return yaml.safe_load((DATA / "toy-gpu.yaml").read_text())


def _expect(mutate, field, message):
    data = copy.deepcopy(_toy())
    mutate(data)
    with pytest.raises(InputError) as info:
        parse_spec(data, file="x.yaml")
    assert info.value.source == "x.yaml"
    assert info.value.field == field, info.value.one_line()
    assert message in info.value.message


@pytest.mark.parametrize(("mutate", "field", "message"), [
    (lambda d: d["compute"].pop("num_units"), "compute.num_units", "missing"),
    (lambda d: d["memory"][2].update(bandwidth="-3 TB/s"), "memory[2].bandwidth", "> 0"),
    (lambda d: d["memory"][2].update(bandwidth="3 TB"), "memory[2].bandwidth", "B/s"),
    (lambda d: d["memory"][2].update(bandwidth="3e9 TB/s"), "memory[2].bandwidth", "absurd"),
    (lambda d: d["compute"]["matrix_peak"].update(bf16="2 PFLOP/s" * 1), None, None),
    (lambda d: d["compute"].update(warp_size=32), "compute.warp_size", "unknown field"),
    (lambda d: d["host"].update(source="nowhere"), "host.source", "unknown source"),
    (lambda d: d.pop("sources"), "sources", "missing"),
    (lambda d: d["efficiency"].update(matrix=1.5), "efficiency.matrix", "absurd"),
    (lambda d: d.update(kind="tpu"), "kind", "must be one of"),
    (lambda d: d["compute"]["matrix_peak"].update(fp9="1 TFLOP/s"), "compute.matrix_peak.fp9",
     "unknown dtype"),
    (lambda d: d["memory"].reverse(), "memory", "must be the largest"),
    (lambda d: d.update(schema="tksim.hw/9"), "schema", "expected"),
])
def test_malformed_spec(mutate, field, message):
    if field is None:  # a legal change must still load
        data = _toy()
        mutate(data)
        parse_spec(data, file="x.yaml")
        return
    _expect(mutate, field, message)


def test_uncited_number_is_rejected():
    data = _toy()
    del data["host"]["source"]
    with pytest.raises(InputError, match="no source") as info:
        parse_spec(data, file="x.yaml")
    assert info.value.field == "host.dispatch"


def test_malformed_yaml_names_line(tmp_path):
    from sim.spec_library import load_spec_file

    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ncompute: [unclosed\n")
    with pytest.raises(InputError, match="malformed YAML") as info:
        load_spec_file(path)
    assert info.value.field.startswith("line ")
